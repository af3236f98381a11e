# syntax=docker/dockerfile:1
#
# SimGR serving image: `simgr serve` on an export bundle mounted read-only at /artifacts.
#
# CPU (default):
#   docker build -t simgr:cpu .
# CUDA (torch CUDA wheel + faiss-gpu; the wheels bring their own CUDA libraries, the host brings the driver):
#   docker build -t simgr:gpu \
#     --build-arg BASE_IMAGE=nvidia/cuda:12.6.3-base-ubuntu24.04 \
#     --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu126 \
#     --build-arg EXTRAS=gpu .
#   docker run --gpus all -v "$PWD/artifacts:/artifacts:ro" -p 8000:8000 simgr:gpu
#
# Both stages start from the same BASE_IMAGE so the venv copied from the builder finds the same
# interpreter at the same path. A base without Python (the CUDA images) gets the distro's python3.

ARG BASE_IMAGE=python:3.11-slim

# ---------------------------------------------------------------------------------------------
FROM ${BASE_IMAGE} AS builder

ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ARG TORCH_VERSION=2.13.0
# "" (CPU) or "gpu" (the pyproject extra that adds faiss-gpu)
ARG EXTRAS=""

SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    DEBIAN_FRONTEND=noninteractive

# distro python3 only on bases without one; its version is whatever the base's distro ships
# hadolint ignore=DL3008
RUN if ! command -v python3 >/dev/null 2>&1; then \
        apt-get update \
        && apt-get install -y --no-install-recommends python3 python3-venv \
        && rm -rf /var/lib/apt/lists/*; \
    fi \
    && python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

# torch first, from the PyTorch index (CPU wheel by default: no 2 GB of CUDA libraries).
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install --index-url "${TORCH_INDEX_URL}" "torch==${TORCH_VERSION}"

# Dependencies next, from pyproject alone (empty package stubs), so that a source edit does not
# reinstall them; the already-installed torch satisfies the project's torch range. Versions are
# pinned by pyproject's ranges. The image serves bundles: the `serve` extra, not `train`/`report`.
WORKDIR /src
COPY pyproject.toml README.md ./
# hadolint ignore=DL3013
RUN --mount=type=cache,target=/root/.cache/pip \
    mkdir -p model index service \
    && touch model/__init__.py index/__init__.py service/__init__.py \
    && pip install ".[serve${EXTRAS:+,$EXTRAS}]"

# faiss-cpu (a core dependency) and faiss-gpu both install the `faiss` package: on a GPU build,
# drop the CPU one and reinstall the GPU one so its files are the ones left on disk.
# hadolint ignore=DL3013
RUN --mount=type=cache,target=/root/.cache/pip \
    case ",${EXTRAS}," in \
        *,gpu,*) pip uninstall -y faiss-cpu \
                 && gpu_pkg="$(pip list --format=freeze | grep -i '^faiss-gpu')" \
                 && pip install --no-deps --force-reinstall "${gpu_pkg}" ;; \
    esac

# The project itself (a regular, non-editable install: the runtime stage needs no source tree).
COPY model/ model/
COPY index/ index/
COPY service/ service/
RUN pip install --no-cache-dir --no-deps --force-reinstall . \
    && simgr --help >/dev/null \
    && python -c "import faiss, torch, service.cli.main"

# ---------------------------------------------------------------------------------------------
FROM ${BASE_IMAGE} AS runtime

ENV DEBIAN_FRONTEND=noninteractive
# tcmalloc, preloaded below: the server's HTTP, JSON and batching allocate many small objects per request.
# benchmarks/serve_load.py, alternating pairs on 2 cores: 1.15x the requests/s at 32 concurrent clients,
# 0.89x their p99, the same single-request latency (README, "Serving: the malloc"). The package is
# libtcmalloc-minimal4t64 on the Ubuntu 24.04 CUDA base, libtcmalloc-minimal4 on Debian's.
# hadolint ignore=DL3008
RUN apt-get update \
    && tcmalloc=libtcmalloc-minimal4 \
    && if apt-cache show libtcmalloc-minimal4t64 >/dev/null 2>&1; then tcmalloc=libtcmalloc-minimal4t64; fi \
    && apt-get install -y --no-install-recommends "$tcmalloc" \
    && if ! command -v python3 >/dev/null 2>&1; then \
        apt-get install -y --no-install-recommends python3; \
    fi \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -c "import ctypes; ctypes.CDLL('libtcmalloc_minimal.so.4')" \
    && useradd --system --uid 10001 --user-group --create-home --home-dir /home/simgr simgr

COPY --from=builder /opt/venv /opt/venv

# Offline at run time: the bundle holds the model and tokenizer, nothing comes from a hub.
# LD_PRELOAD= (empty) at `docker run -e` serves on glibc's malloc instead.
ENV PATH=/opt/venv/bin:$PATH \
    LD_PRELOAD=libtcmalloc_minimal.so.4 \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    HF_HOME=/home/simgr/.cache/huggingface \
    SIMGR_NO_PROGRESS=1 \
    SIMGR_ARTIFACTS=/artifacts \
    SIMGR_HOST=0.0.0.0 \
    SIMGR_PORT=8000

USER 10001:10001
WORKDIR /home/simgr
EXPOSE 8000

# Liveness only (/readyz is for routing traffic); stdlib urllib, so no curl in the image.
# urlopen raises on a non-2xx answer or no answer, which exits 1 = unhealthy.
HEALTHCHECK --interval=15s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]

CMD ["simgr", "serve", "--artifacts", "/artifacts", "--host", "0.0.0.0", "--port", "8000"]
