"""export: PyTorch -> ONNX (``onnx_export``, file handling in ``onnx_graph``), OpenVINO IR
(``openvino_export``), TensorRT engines (``tensorrt``), all checked by ``parity``."""
