"""The measuring core: open a model in a runtime, time it, and say what it executes in.

A leaf package: it imports only the standard library and numpy at module level, and only
itself (relative imports), never the rest of edgekd, because the remote executor copies it
to a device and runs ``python3 -m <package>.device_runner JOB_DIR`` there with nothing but
numpy and a runtime. Runtimes (onnxruntime, openvino, onnx) are imported inside functions.
Errors are plain (ValueError, LookupError, FileNotFoundError, RuntimeError); edgekd code
above turns them into its own.

* :mod:`.timing` - THE timing loop (``time_calls``, ``paired_ms``) and its statistics.
* :mod:`.machine` - CPU fingerprint, ``usable_cores()``, peak memory, pinning, roofline.
* :mod:`.threads` - the thread policy: default counts, libgomp's waiting, the governor.
* :mod:`.inputs` - input checks and the batched prediction pass.
* :mod:`.onnxruntime_open` - ``OrtSettings`` and ``open_ort``, the one ORT session builder.
* :mod:`.openvino_open` - ``OvSettings`` and ``compile_ov``, the one OpenVINO compile.
* :mod:`.precision` - "is this model INT8?", one answer.
* :mod:`.device_runner` - the bench job protocol run on a device.
"""
