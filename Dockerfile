# bidsfill BIDS App image: CUDA-capable PyTorch, antspyx, the package with its bundled
# weights (bidsfill/data), and FSL FAST + lesion_filling from FSL's conda channel.
#
#   docker build -t bidsfill:0.1.0 .                      # CUDA torch from PyPI, FSL on
#   docker run --rm --gpus all --read-only --tmpfs /tmp --user "$(id -u):$(id -g)" \
#       -v /data/bids:/data/bids:ro -v /data/out:/out -v /scratch/work:/work \
#       bidsfill:0.1.0 /data/bids /out participant -w /work
#
# Build arguments:
#   TORCH_VERSION    torch release installed from PyPI (default 2.13.0: PyPI's Linux wheels
#                    are CUDA builds that bring their CUDA runtime as nvidia-* wheels, so no
#                    CUDA base image is needed; the host only needs the NVIDIA driver).
#   TORCH_INDEX_URL  another index for torch, e.g. https://download.pytorch.org/whl/cu126
#                    (another CUDA version) or https://download.pytorch.org/whl/cpu.
#   TORCH_WHEEL      file name of a torch wheel put in docker/wheels/ to install instead
#                    (offline/CPU builds; scripts/container-smoke.sh uses this).
#   INSTALL_FSL      1 (default) installs FSL FAST and lesion_filling with micromamba;
#                    0 leaves them out (bidsfill then segments with ANTs Atropos and the
#                    `fsl` fill method is unavailable).
#   VERSION, VCS_REF, BUILD_DATE, IMAGE_NAME   labels and the Container entry that bidsfill
#                    writes into dataset_description.json.

# ---------------------------------------------------------------- FSL (micromamba) ----
FROM python:3.11-slim-bookworm AS fsl
ARG INSTALL_FSL=1
ARG MICROMAMBA_VERSION=latest
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ENV MAMBA_ROOT_PREFIX=/opt/micromamba
COPY docker/fsl-env.yml /tmp/fsl-env.yml
# hadolint ignore=DL3008
RUN mkdir -p /opt/fsl \
    && if [ "$INSTALL_FSL" = "1" ]; then \
        apt-get update \
        && apt-get install -y --no-install-recommends bzip2 ca-certificates curl \
        && rm -rf /var/lib/apt/lists/* \
        && curl -fsSL "https://micro.mamba.pm/api/micromamba/linux-64/${MICROMAMBA_VERSION}" \
           | tar -xj -C /usr/local bin/micromamba \
        && micromamba create -y -p /opt/fsl -f /tmp/fsl-env.yml \
        && micromamba clean -y -a \
        && rm -rf /opt/fsl/include /opt/fsl/pkgs /opt/fsl/conda-meta/*.json.bak "$MAMBA_ROOT_PREFIX" \
        && test -x /opt/fsl/bin/fast \
        && test -x /opt/fsl/bin/lesion_filling; \
    fi

# ------------------------------------------------------------ Python environment ------
FROM python:3.11-slim-bookworm AS builder
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=""
ARG TORCH_WHEEL=""
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:$PATH
# A venv, not the system site-packages: works on the official python image and on a
# Debian base where the system Python is "externally managed" (PEP 668).
RUN python3 -m venv /opt/venv
# Only this stage sees the wheelhouse, so a local wheel never ends up in the final image.
COPY docker/wheels/ /tmp/wheels/
RUN if [ -n "$TORCH_WHEEL" ]; then \
        pip install --no-cache-dir "/tmp/wheels/${TORCH_WHEEL}"; \
    elif [ -n "$TORCH_INDEX_URL" ]; then \
        pip install --no-cache-dir "torch==${TORCH_VERSION}" --index-url "$TORCH_INDEX_URL"; \
    else \
        pip install --no-cache-dir "torch==${TORCH_VERSION}"; \
    fi
COPY pyproject.toml README.md run.py /src/
COPY bidsfill /src/bidsfill
# A regular (non-editable) install: the package and everything under bidsfill/data
# (default diffusion weights and their model cards) land in site-packages.
RUN pip install --no-cache-dir /src \
    && python -c "import ants, bids, bidsfill, monai, nipype, torch; print('bidsfill', bidsfill.__version__, 'torch', torch.__version__)"

# ------------------------------------------------------------------ final image -------
FROM python:3.11-slim-bookworm
ARG VERSION=0.1.0
ARG VCS_REF=unknown
ARG BUILD_DATE=unknown
ARG IMAGE_NAME=bidsfill/bidsfill

LABEL org.opencontainers.image.title="bidsfill" \
      org.opencontainers.image.description="BIDS App: fill brain lesions in T1w MRI with healthy-looking tissue (classical fillers and denoising diffusion models)" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${VCS_REF}" \
      org.opencontainers.image.created="${BUILD_DATE}" \
      org.opencontainers.image.source="https://github.com/bidsfill/bidsfill" \
      org.opencontainers.image.url="https://github.com/bidsfill/bidsfill" \
      org.opencontainers.image.documentation="https://github.com/bidsfill/bidsfill#containers" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.vendor="bidsfill developers"

COPY --from=fsl /opt/fsl /opt/fsl
COPY --from=builder /opt/venv /opt/venv

# Nothing is written into the image at run time, so `--read-only` works given writable
# output, work (-w) and /tmp mounts: HOME and every tool's config/cache dir live in /tmp,
# the default work dir is /tmp/work (WORKDIR), and no tool phones home (NO_ET: nipype's
# etelemetry check). FSL's bin dir comes after the venv so that its conda Python (if any)
# never shadows the venv's.
ENV PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/opt/fsl/bin \
    FSLDIR=/opt/fsl \
    FSLOUTPUTTYPE=NIFTI_GZ \
    FSLMULTIFILEQUIT=TRUE \
    OMP_NUM_THREADS=1 \
    MKL_NUM_THREADS=1 \
    OPENBLAS_NUM_THREADS=1 \
    HOME=/tmp \
    XDG_CACHE_HOME=/tmp/.cache \
    XDG_CONFIG_HOME=/tmp/.config \
    MPLCONFIGDIR=/tmp/matplotlib \
    MPLBACKEND=Agg \
    TORCH_HOME=/tmp/torch \
    NO_ET=1 \
    NIPYPE_NO_ET=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    BIDSFILL_CONTAINER_TYPE=docker \
    BIDSFILL_CONTAINER_IMAGE="${IMAGE_NAME}:${VERSION}"

RUN groupadd --gid 1000 bidsfill \
    && useradd --uid 1000 --gid 1000 --no-create-home --home-dir /tmp \
       --shell /usr/sbin/nologin bidsfill \
    && bidsfill --version

WORKDIR /tmp
USER 1000:1000
ENTRYPOINT ["bidsfill"]
