#!/usr/bin/env bash
# Build the bidsfill image with podman and run the demo inside it, read-only, then check
# the outputs. Made for machines with no Docker engine and no container registry (only the
# Debian and PyPI package registries): the Dockerfile's base image is made from Debian with
# debootstrap and tagged with the FROM name, FSL is left out (INSTALL_FSL=0: FSL's conda
# channel is not reachable) and torch is a local CPU wheel from docker/wheels/, so the build
# takes minutes instead of downloading PyPI's multi-GB CUDA build.
#
# Usage (as root: rootful podman, apt-get):  bash scripts/container-smoke.sh
# Environment:
#   BIDSFILL_CTR_DIR        podman storage/config, base rootfs, run dirs (default /tmp/bidsfill-ctr)
#   BIDSFILL_TORCH_WHEEL    a torch wheel file to use (default: `pip download torch==$TORCH_VERSION`,
#                           which takes the local CPU wheel where pip's config has one)
#   BIDSFILL_TORCH_VERSION  torch version for that download (default 2.13.0)
#   BIDSFILL_DEBIAN_MIRROR  Debian mirror for debootstrap (default: the host's apt source)
#   BIDSFILL_SMOKE_DEMO_ARGS  extra bidsfill-demo arguments (e.g. --small)
#   BIDSFILL_SMOKE_KEEP=1   keep the built image (default: removed with its build cache;
#                           the debootstrap base image is always kept for the next run)
# Prints the build time, the image size and the run times; exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
D=${BIDSFILL_CTR_DIR:-/tmp/bidsfill-ctr}
TORCH_VERSION=${BIDSFILL_TORCH_VERSION:-2.13.0}
VERSION=$(sed -n 's/^__version__ = "\(.*\)"/\1/p' bidsfill/__init__.py)
IMAGE=localhost/bidsfill:$VERSION # the Tag that dataset_description.json must record
log() { printf '\n== %s\n' "$*"; }
die() { printf 'container-smoke: FAILED: %s\n' "$*" >&2; exit 1; }

# ---- tools ---------------------------------------------------------------------------
missing=()
for tool in podman buildah debootstrap runc; do
    command -v "$tool" >/dev/null || missing+=("$tool")
done
if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${missing[*]}"
    [ "$(id -u)" = 0 ] || die "need root to apt-get install ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman buildah debootstrap runc >/dev/null
fi

# ---- podman configuration (see the notes on this machine: runc, cgroupfs, ulimits) ----
mkdir -p "$D/conf" "$D/tmp" "$D/libpod-tmp"
cat >"$D/conf/storage.conf" <<EOT
[storage]
driver = "overlay"
graphroot = "$D/storage"
runroot = "$D/runroot"
EOT
cat >"$D/conf/containers.conf" <<EOT
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "$D/events.log"
image_copy_tmp_dir = "$D/tmp"
tmp_dir = "$D/libpod-tmp"
EOT
export CONTAINERS_STORAGE_CONF=$D/conf/storage.conf CONTAINERS_CONF=$D/conf/containers.conf TMPDIR=$D/tmp

# ---- base image: Debian bookworm from debootstrap, tagged as the Dockerfile's FROM ----
BASE=$(awk 'toupper($1) == "FROM" { print $2; exit }' Dockerfile)
case "$BASE" in */*) ;; *) BASE=docker.io/library/$BASE ;; esac
if ! podman image exists "$BASE"; then
    MIRROR=${BIDSFILL_DEBIAN_MIRROR:-$(awk '/^URIs:/ { print $2; exit }' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)}
    MIRROR=${MIRROR:-http://deb.debian.org/debian}
    log "debootstrap bookworm from $MIRROR -> $BASE"
    rm -rf "$D/rootfs"
    debootstrap --variant=minbase \
        --include=python3,python3-venv,python3-pip,python-is-python3,ca-certificates \
        bookworm "$D/rootfs" "$MIRROR" >"$D/debootstrap.log" 2>&1 || {
        tail -n 20 "$D/debootstrap.log"
        die "debootstrap"
    }
    # HTTPS to the registries goes through a proxy whose CA is only in the host's bundle.
    cp /etc/ssl/certs/ca-certificates.crt "$D/rootfs/etc/ssl/certs/"
    rm -rf "$D/rootfs/var/cache/apt/archives/"*.deb "$D/rootfs/var/lib/apt/lists/"*
    tar -C "$D/rootfs" -c . | podman import \
        --change 'ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt' \
        --change 'CMD ["bash"]' - localhost/debian-base:bookworm >/dev/null
    podman tag localhost/debian-base:bookworm "$BASE"
    rm -rf "$D/rootfs"
fi
PYVER=$(podman run --rm --network none "$BASE" python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')
echo "base image $BASE (Python $PYVER)"

# ---- torch wheel for the build context ---------------------------------------------
WHEEL=${BIDSFILL_TORCH_WHEEL:-}
if [ -z "$WHEEL" ]; then
    mkdir -p "$D/wheels"
    WHEEL=$(ls "$D"/wheels/torch-"$TORCH_VERSION"*-cp"${PYVER/./}"-*.whl 2>/dev/null | head -n 1 || true)
    if [ -z "$WHEEL" ]; then
        log "pip download torch==$TORCH_VERSION (cp${PYVER/./}, no deps)"
        PY=python3
        [ -x "$REPO/.venv/bin/python" ] && PY=$REPO/.venv/bin/python
        "$PY" -m pip download -q "torch==$TORCH_VERSION" --no-deps --only-binary=:all: \
            --python-version "$PYVER" --platform manylinux_2_28_x86_64 -d "$D/wheels"
        WHEEL=$(ls "$D"/wheels/torch-"$TORCH_VERSION"*-cp"${PYVER/./}"-*.whl | head -n 1)
    fi
fi
[ -f "$WHEEL" ] || die "no torch wheel at $WHEEL"
WHEEL_NAME=$(basename "$WHEEL")
CTX_WHEEL=$REPO/docker/wheels/$WHEEL_NAME
cleanup() {
    rm -f "$CTX_WHEEL"
    if [ "${BIDSFILL_SMOKE_KEEP:-0}" != 1 ]; then
        podman rmi -f "$IMAGE" >/dev/null 2>&1 || true
        podman image prune -f >/dev/null 2>&1 || true
        buildah rm --all >/dev/null 2>&1 || true
    fi
}
trap cleanup EXIT
ln -f "$WHEEL" "$CTX_WHEEL" 2>/dev/null || cp "$WHEEL" "$CTX_WHEEL"
echo "torch wheel: $WHEEL_NAME"

# ---- build ---------------------------------------------------------------------------
log "podman build $IMAGE (INSTALL_FSL=0, TORCH_WHEEL=$WHEEL_NAME)"
t0=$(date +%s)
podman build --pull=never --layers \
    --build-arg INSTALL_FSL=0 \
    --build-arg TORCH_WHEEL="$WHEEL_NAME" \
    --build-arg VERSION="$VERSION" \
    --build-arg VCS_REF="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)" \
    --build-arg BUILD_DATE="$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
    --build-arg IMAGE_NAME=localhost/bidsfill \
    -t "$IMAGE" . >"$D/build.log" 2>&1 || {
    tail -n 40 "$D/build.log"
    die "podman build (log: $D/build.log)"
}
BUILD_S=$(($(date +%s) - t0))
SIZE_B=$(podman image inspect --format '{{.Size}}' "$IMAGE")
SIZE_MB=$((SIZE_B / 1000000))
echo "built in ${BUILD_S} s; image size ${SIZE_MB} MB"
rm -f "$CTX_WHEEL"

# ---- run: the demo dataset, then the participant and group levels, read-only --------
R=$D/run
rm -rf "$R"
mkdir -p "$R/demo" "$R/out" "$R/work" "$R/tmp"
chmod 0777 "$R/demo" "$R/out" "$R/work" "$R/tmp" # the image runs as uid 1000
# Docker-like --read-only: no automatic tmpfs (podman adds one by default); /tmp is a mount.
RO=(--rm --read-only --read-only-tmpfs=false --network none -v "$R/tmp:/tmp")

log "bidsfill-demo inside the container"
t0=$(date +%s)
# shellcheck disable=SC2086
podman run "${RO[@]}" -v "$R/demo:/demo" --entrypoint bidsfill-demo "$IMAGE" \
    /demo ${BIDSFILL_SMOKE_DEMO_ARGS:-}
DEMO_S=$(($(date +%s) - t0))
[ -f "$R/demo/bids/dataset_description.json" ] || die "bidsfill-demo wrote no dataset"

log "participant level: input read-only, --read-only image, --network none"
t0=$(date +%s)
podman run "${RO[@]}" \
    -v "$R/demo/bids:/data/bids:ro" -v "$R/out:/out" -v "$R/work:/work" \
    "$IMAGE" /data/bids /out participant \
    --derivatives /data/bids/derivatives/lesions -w /work --nprocs 2
PART_S=$(($(date +%s) - t0))

log "group level"
podman run "${RO[@]}" -v "$R/demo/bids:/data/bids:ro" -v "$R/out:/out" -v "$R/work:/work" \
    "$IMAGE" /data/bids /out group -w /work

# ---- checks --------------------------------------------------------------------------
log "checks"
mapfile -t FILLED < <(find "$R/out" -name '*desc-filled_T1w.nii.gz' | sort)
[ ${#FILLED[@]} -gt 0 ] || die "no *desc-filled_T1w.nii.gz in the output"
printf 'filled: %s\n' "${FILLED[@]#"$R/out/"}"
[ -f "$R/out/group_T1w.tsv" ] || die "no group_T1w.tsv"
python3 - "$R/out" "${FILLED[0]%.nii.gz}.json" "$IMAGE" <<'EOF'
import json
import sys
from pathlib import Path

out, sidecar, image = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
desc = json.loads((out / "dataset_description.json").read_text())
container = desc["GeneratedBy"][0].get("Container")
assert container and container.get("Type") == "docker", f"no Container in GeneratedBy: {desc}"
assert container.get("Tag") == image, (container, image)
print("dataset_description GeneratedBy.Container:", container)
meta = json.loads(sidecar.read_text())
print("filled sidecar: Method", meta.get("Method"), "| Device", meta.get("Device"))
dseg = next(sidecar.parent.glob("*desc-filled_dseg.json"), None)
if dseg is not None:
    print("segmenter:", json.loads(dseg.read_text()).get("Segmenter"))
htmls = sorted(p.name for p in out.glob("sub-*.html"))
assert htmls, "no subject report"
print("reports:", htmls)
EOF
OWNERS=$(find "$R/out" -mindepth 1 -printf '%u(%U)\n' | sort -u | tr '\n' ' ')
echo "output files owned by: $OWNERS"

log "summary"
echo "image $IMAGE: build ${BUILD_S} s, size ${SIZE_MB} MB ($(podman image inspect --format '{{.Size}}' "$IMAGE") bytes)"
echo "bidsfill-demo ${DEMO_S} s; participant run ${PART_S} s"
echo "container-smoke: OK"
