# breastai container: `breastai` CLI on ONNX Runtime (no torch). Research use only, not a medical device.
#
# GPU image (default; needs the NVIDIA Container Toolkit on the host):
#   docker build -t breastai .
#   docker run --rm --gpus all -v /path/to/STUDY:/data:ro -v /path/to/OUT:/out breastai segment /data -o /out
# CPU image (with OpenVINO: faster CPU inference, and bf16 on CPUs that have it):
#   docker build -t breastai:cpu --build-arg BASE=python:3.11-slim --build-arg ONNXRUNTIME=onnxruntime \
#     --build-arg EXTRAS=openvino .
# Bake released weights into the image (names from `breastai weights list`):
#   docker build -t breastai --build-arg BAKE_WEIGHTS="NAME1 NAME2" .
# The bundled demo weights are always inside the package. Offline sites: mount a bundle and run
#   docker run --rm -v /media/usb:/bundle:ro -v breastai-home:/opt/breastai breastai download-weights --from /bundle/weights.tar

# onnxruntime-gpu 1.31 is built for CUDA 13 + cuDNN 9: keep BASE and ONNXRUNTIME in step.
ARG BASE=nvidia/cuda:13.0.1-cudnn-runtime-ubuntu22.04
FROM ${BASE}

ARG DEBIAN_FRONTEND=noninteractive
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    BREASTAI_HOME=/opt/breastai \
    HF_HOME=/opt/breastai/hf

# Python 3.11: from Ubuntu 22.04 on the CUDA base; already present on python:3.11-* bases.
# hadolint ignore=DL3008
RUN if ! command -v python3.11 >/dev/null 2>&1; then \
        apt-get update \
        && apt-get install -y --no-install-recommends python3.11 python3.11-venv ca-certificates \
        && rm -rf /var/lib/apt/lists/*; \
    fi \
    && python3.11 -m venv /opt/venv \
    && useradd --create-home --uid 1000 --user-group breastai

WORKDIR /app
# Exact files first so that the dependency layer is cached; README* may be absent.
COPY pyproject.toml weights.toml README* ./
COPY breastai ./breastai

# Pinned ONNX Runtime matching the CUDA base; the CPU variant swaps in the plain CPU build.
ARG ONNXRUNTIME=onnxruntime-gpu==1.31.1
# Optional extras of the package, e.g. "openvino" for the CPU image.
ARG EXTRAS=""
# hadolint ignore=DL3013
RUN pip install "$ONNXRUNTIME" "/app${EXTRAS:+[$EXTRAS]}" \
    && case "$ONNXRUNTIME" in \
         onnxruntime-gpu*) ;; \
         *) pip uninstall -y onnxruntime-gpu && pip install --force-reinstall --no-deps "$ONNXRUNTIME" ;; \
       esac \
    && python -c "import breastai.weights, onnxruntime; print(onnxruntime.get_available_providers())" \
    && if pip show torch >/dev/null 2>&1; then echo "torch must not be in the image" >&2; exit 1; fi

# Weights to download at build time (space-separated names); empty = bundled demo weights only.
ARG BAKE_WEIGHTS=""
# hadolint ignore=SC2086
RUN mkdir -p "$BREASTAI_HOME" /data /out \
    && if [ -n "$BAKE_WEIGHTS" ]; then breastai download-weights $BAKE_WEIGHTS; fi \
    && breastai weights verify \
    && chown -R breastai:breastai "$BREASTAI_HOME" /out

# The breastai user (numeric, so that Kubernetes' runAsNonRoot can check it).
USER 1000:1000
WORKDIR /out
ENTRYPOINT ["breastai"]
CMD ["--help"]
