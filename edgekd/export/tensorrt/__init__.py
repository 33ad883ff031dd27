"""TensorRT engines from ONNX: the build plan (pure, tested anywhere), the engine cache and the
builder itself (needs ``tensorrt`` and a CUDA GPU; absent -> RuntimeUnavailable).

``plan`` and ``engine_cache`` import no TensorRT; ``builder`` and ``calibrator`` import it
lazily. Symmetric Q/DQ for explicit quantization is a quantizer
(:mod:`edgekd.quantize.tensorrt_qdq`); export -> engine -> parity is a pipeline step
(:mod:`edgekd.pipeline.tensorrt_stage`).
"""
