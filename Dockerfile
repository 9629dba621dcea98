# bidsfill BIDS App image (minimal; the GPU/FSL image is finished in a later issue).
# Build: docker build -t bidsfill .      Run: docker run --rm -v /data:/data bidsfill /data/bids /data/out participant
FROM python:3.11-slim-bookworm

ARG TORCH_VERSION=2.13.0
ENV PIP_NO_CACHE_DIR=1 \
    OMP_NUM_THREADS=1 \
    MKL_NUM_THREADS=1 \
    MPLCONFIGDIR=/tmp/matplotlib \
    BIDSFILL_CONTAINER_TYPE=docker \
    BIDSFILL_CONTAINER_IMAGE=bidsfill

WORKDIR /opt/bidsfill
COPY pyproject.toml README.md run.py ./
COPY bidsfill ./bidsfill
RUN pip install --no-cache-dir "torch==${TORCH_VERSION}" && pip install --no-cache-dir . \
    && useradd --create-home --uid 1000 bidsfill

USER bidsfill
LABEL org.opencontainers.image.title="bidsfill" \
      org.opencontainers.image.source="https://github.com/bidsfill/bidsfill" \
      org.opencontainers.image.version="0.1.0"
ENTRYPOINT ["bidsfill"]
