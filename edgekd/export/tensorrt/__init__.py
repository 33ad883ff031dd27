"""TensorRT engines from ONNX: build plan (pure, tested anywhere), symmetric Q/DQ for explicit
quantization, and the builder itself (needs ``tensorrt`` and a CUDA GPU; absent -> RuntimeUnavailable).

``plan`` and ``qdq`` import no TensorRT; ``builder`` and ``calibrator`` import it lazily.
"""
