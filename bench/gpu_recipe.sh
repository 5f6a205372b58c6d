#!/usr/bin/env bash
# The resnet18 recipe on a GPU, in time-limited chunks (issue 7). Each call trains for at most
# CHUNK_MIN minutes of steps, checkpoints and exits; call it again until it prints "finished".
# Then: uv run python -m bench.curve --run OUT --command "bash bench/gpu_recipe.sh DATA OUT"
#
#   bash bench/gpu_recipe.sh ../shared/data/cifar10-jpg.tar.gz runs/cifar-resnet18
#   NPROC=4 bash bench/gpu_recipe.sh DATA runs/r18-4gpu     # data-parallel over 4 GPUs
set -euo pipefail
DATA=${1:?usage: bench/gpu_recipe.sh DATA [OUT]}
OUT=${2:-runs/cifar-resnet18}
CHUNK_MIN=${CHUNK_MIN:-7}
NPROC=${NPROC:-1}
args=(train --data "$DATA" --out "$OUT" --stop-after-minutes "$CHUNK_MIN")
if [ -f "$OUT/checkpoint.pt" ]; then
    args+=(--resume)
else
    args+=(--preset resnet18 ${EXTRA_ARGS:-})
fi
# uv where it is installed; the GPU machines have torch preinstalled and no uv: plain python3.
if command -v uv >/dev/null; then py=(uv run python); else py=(python3); export PYTHONPATH=.; fi
if [ "$NPROC" -gt 1 ]; then
    exec "${py[@]}" -m torch.distributed.run --nproc-per-node "$NPROC" -m app.cli "${args[@]}"
fi
exec "${py[@]}" -m app.cli "${args[@]}"
