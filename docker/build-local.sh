#!/usr/bin/env bash
# Build the API image on a machine without Docker Hub access (this one):
#   1. start Debian's Docker engine if none answers,
#   2. make a local base image (debootstrap bookworm + python3) unless it exists,
#   3. download the API's Python wheels on the host into docker/wheelhouse (torch: its CPU build
#      from PyTorch's index where that is reachable),
#   4. docker build docker/api.Dockerfile on that base, and print the image size.
# Usage: docker/build-local.sh [--wheels-only]      (run as root)
set -euo pipefail
cd "$(dirname "$0")/.."
BASE=${BASE:-latent-search/base:bookworm}
IMAGE=${IMAGE:-latent-search/api:local}
WHEELS=docker/wheelhouse

# torch's CPU build is published on PyTorch's own wheel index, not on PyPI (whose torch is the CUDA
# build, ~5 GB with its libraries). TORCH_INDEX names that index (or a mirror of it).
TORCH_INDEX=${TORCH_INDEX:-https://download.pytorch.org/whl/cpu}

wheels() {
    mkdir -p "$WHEELS"
    local pin
    pin=$(grep -E '^torch==' docker/requirements-api.txt)
    # pip's config on some machines points at index folders that do not exist: drop those warnings, keep errors.
    python3 -m pip download --quiet --only-binary=:all: --no-deps --dest "$WHEELS" --index-url "$TORCH_INDEX" \
        "$pin" 2> >(grep -v "WARNING: Location\|WARNING: Retrying" >&2) ||
        echo "torch: $TORCH_INDEX not reachable; taking what pip finds for $pin (from PyPI: the CUDA build," \
            "a much larger image that runs the same on a CPU)" >&2
    python3 -m pip download --quiet --only-binary=:all: --dest "$WHEELS" -r docker/requirements-api.txt \
        2> >(grep -v "WARNING: Location" >&2)
    local torch_wheel
    torch_wheel=$(ls "$WHEELS" | grep '^torch-' | head -n 1) || { echo "the wheelhouse has no torch wheel" >&2; exit 1; }
    echo "torch in the image: $torch_wheel"
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
    tar -C "$rootfs" -c . | docker import --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' - "$BASE" >/dev/null
    rm -rf "$rootfs"
}

wheels
[ "${1:-}" = "--wheels-only" ] && exit 0
start_engine
base_image
started=$(date +%s)
docker build --network host --build-arg BASE_IMAGE="$BASE" -f docker/api.Dockerfile -t "$IMAGE" . >/tmp/docker-build.log
echo "built $IMAGE in $(( $(date +%s) - started )) s; size $(docker image inspect "$IMAGE" --format '{{.Size}}' | awk '{printf "%.0f MB", $1/1e6}')"
