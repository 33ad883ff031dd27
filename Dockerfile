# edgekd CPU image: PyTorch (CPU build), ONNX Runtime and OpenVINO; runs `edgekd demo` by default.
#   docker build -t edgekd .
#   docker run --rm -v "$PWD/runs:/home/edgekd/runs" edgekd            # the demo
#   docker run --rm edgekd bench --help
# For NVIDIA GPUs, build on a CUDA/TensorRT base and take torch from PyPI's CUDA build
# (the TensorRT image already holds TensorRT; EXTRAS adds NNCF and timm here):
#   docker build --build-arg BASE_IMAGE=nvcr.io/nvidia/tensorrt:24.08-py3 \
#                --build-arg TORCH_INDEX=https://pypi.org/simple \
#                --build-arg EXTRAS=openvino,vision -t edgekd:cuda .
ARG BASE_IMAGE=python:3.11-slim-bookworm
FROM ${BASE_IMAGE}

# The CPU wheel index keeps the image small; PyPI's default torch is a multi-GB CUDA build.
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
# pip extras of edgekd: openvino (NNCF INT8), vision (timm image models), tensorrt.
ARG EXTRAS=openvino

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

WORKDIR /opt/edgekd
COPY pyproject.toml README.md ./
COPY edgekd ./edgekd
COPY targets ./targets
COPY calibration ./calibration
# DL3013 asks for pinned versions: this installs the project itself, whose dependencies
# are bounded in pyproject.toml.
# hadolint ignore=DL3013
RUN python -m pip install --extra-index-url "${TORCH_INDEX}" ".[${EXTRAS}]" \
    && useradd --create-home --uid 1000 edgekd

USER 1000:1000
WORKDIR /home/edgekd
ENTRYPOINT ["edgekd"]
CMD ["demo"]
