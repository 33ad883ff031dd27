"""quantize: INT8 that is verified and measured.

``protocol`` (the Quantizer protocol, QuantizeInputs, QuantizeResult, the QUANTIZERS registry)
and ``quantizers`` (the built-ins, registered: import it to use them) are the front door; the
algorithms behind them: ``ort_static`` (ONNX Runtime static QDQ, the default),
``accuracy_aware`` (layers kept in float by ``sensitivity`` until the accuracy budget holds),
``nncf_openvino`` (OpenVINO via NNCF, with accuracy control), ``dynamic`` (only where measured
faster), ``tensorrt_qdq`` (symmetric Q/DQ for TensorRT); ``assess``/``coverage`` (speed-up,
size ratio and INT8 op coverage against FP32), ``config`` (QuantizeConfig).
"""
