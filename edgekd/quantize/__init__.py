"""quantize: INT8 that is verified and measured.

``ort_static`` (ONNX Runtime static QDQ, the default), ``accuracy_aware`` (layers kept in
float by ``sensitivity`` until the accuracy budget holds), ``nncf_openvino`` (OpenVINO via
NNCF, with accuracy control), ``dynamic`` (only where measured faster), ``assess``/``coverage``
(speed-up, size ratio and INT8 op coverage against FP32), ``config`` (QuantizeConfig).
"""
