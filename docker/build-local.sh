#!/usr/bin/env bash
# Build the API image on a machine without Docker Hub access (this one):
#   1. start Debian's Docker engine if none answers,
#   2. make a local base image (debootstrap bookworm + python3) unless it exists,
#   3. download the API's Python wheels on the host into docker/wheelhouse (no torch: the
#      service runs encoders with ONNX Runtime),
#   4. docker build docker/api.Dockerfile on that base, and print the image size.
# Usage: docker/build-local.sh [--wheels-only]      (run as root)
set -euo pipefail
cd "$(dirname "$0")/.."
BASE=${BASE:-latent-search/base:bookworm-min}
IMAGE=${IMAGE:-latent-search/api:local}
REQUIREMENTS=${REQUIREMENTS:-requirements-api.txt}  # requirements-milvus.txt: with the Milvus client
WHEELS=docker/wheelhouse

# A Python with pip to download with (inside `uv run` the first python3 is the project's venv, which has none).
pip_python() {
    local py
    for py in "${PIP_PYTHON:-}" python3 /usr/bin/python3 /usr/local/bin/python3; do
        [ -n "$py" ] && "$py" -m pip --version >/dev/null 2>&1 && { echo "$py"; return; }
    done
    echo "no Python with pip found; set PIP_PYTHON" >&2
    exit 1
}

wheels() {
    mkdir -p "$WHEELS"
    local py
    py=$(pip_python)
    # pip's config on some machines points at index folders that do not exist: drop those warnings, keep errors.
    "$py" -m pip download --quiet --only-binary=:all: --dest "$WHEELS" -r "docker/$REQUIREMENTS" \
        2> >(grep -v "WARNING: Location" >&2)
    ls "$WHEELS" | grep -q '^torch-' && { echo "the wheelhouse holds a torch wheel the image does not need: clear $WHEELS" >&2; exit 1; }
    echo "wheelhouse: $(ls "$WHEELS"/*.whl | wc -l) wheels, $(du -sh "$WHEELS" | cut -f1)"
}

start_engine() {
    docker info >/dev/null 2>&1 && return
    command -v dockerd >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io docker-compose >/dev/null; }
    nohup dockerd --data-root /var/lib/docker-ls --storage-driver vfs --iptables=false --bridge=none \
        >/tmp/dockerd.log 2>&1 &
    for _ in $(seq 60); do docker info >/dev/null 2>&1 && return; sleep 1; done
    echo "dockerd did not start; see /tmp/dockerd.log" >&2
    exit 1
}

base_image() {
    docker image inspect "$BASE" >/dev/null 2>&1 && return
    command -v debootstrap >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null; }
    rootfs=$(mktemp -d /tmp/latent-rootfs.XXXX)
    debootstrap --variant=minbase --include=python3,python3-venv,python3-pip,ca-certificates \
        bookworm "$rootfs" http://deb.debian.org/debian >/tmp/debootstrap.log
    chmod 755 "$rootfs"  # mktemp made it 0700: as the image's / it would lock out the non-root user
    # What a runtime image never reads (apt's lists and caches, documentation, translations):
    # ~140 MB of the 290 MB debootstrap leaves, as the official slim Python images also drop.
    rm -rf "$rootfs"/var/cache/apt/* "$rootfs"/var/lib/apt/lists/* "$rootfs"/usr/share/doc/* \
        "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* "$rootfs"/usr/share/locale/*
    tar -C "$rootfs" -c . | docker import --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' - "$BASE" >/dev/null
    rm -rf "$rootfs"
}

wheels
[ "${1:-}" = "--wheels-only" ] && exit 0
start_engine
base_image
started=$(date +%s)
docker build --network host --build-arg BASE_IMAGE="$BASE" --build-arg REQUIREMENTS="$REQUIREMENTS" -f docker/api.Dockerfile -t "$IMAGE" . >/tmp/docker-build.log
echo "built $IMAGE in $(( $(date +%s) - started )) s; size $(docker image inspect "$IMAGE" --format '{{.Size}}' | awk '{printf "%.0f MB", $1/1e6}')"
