#!/usr/bin/env bash
# One call on a lent GPU machine (issue 14), sized for a 15-minute device lease: smoke-test the
# CUDA paths, train the resnet18 recipe for as many epochs as BUDGET_S seconds of measured
# throughput buy, measure the data pipeline against the bare model, build an index and evaluate.
# Everything it measures lands in $RESULTS (logs, metrics, tables); checkpoints stay behind.
#
#   RESULTS=$OUT BUDGET_S=250 bash bench/gpu_session.sh DATA       # on the GPU machine
#   RESULTS=/tmp/r PRESET=cpu-small BUDGET_S=20 SMOKE_STEPS=6 bash bench/gpu_session.sh DATA   # dry run
#
# Each step has its own time limit and a failure does not stop the steps after it.
set -uo pipefail
DATA=${1:?usage: bench/gpu_session.sh DATA}
RESULTS=${RESULTS:?set RESULTS to the folder the results go to}
BUDGET_S=${BUDGET_S:-250}
PRESET=${PRESET:-resnet18}
SMOKE_STEPS=${SMOKE_STEPS:-60}
TRAIN_IMAGES=${TRAIN_IMAGES:-50000}
WORK=${WORK:-runs/gpu-session}
# $PY, else the project's venv where it exists, else the machine's python3 (the GPU machines:
# torch preinstalled, no registry: PY=python3 there).
if [ -n "${PY:-}" ]; then py=("$PY"); export PYTHONPATH=.${PYTHONPATH:+:$PYTHONPATH}
elif [ -d .venv ] && command -v uv >/dev/null; then py=(uv run python)
else py=(python3); export PYTHONPATH=.${PYTHONPATH:+:$PYTHONPATH}; fi
export PYTHONUNBUFFERED=1
mkdir -p "$RESULTS" "$WORK"
STEPS="$RESULTS/steps.log"
step() {  # step NAME SECONDS CMD...: run with a limit, log the exit status and the time taken
    local name=$1 limit=$2 start=$SECONDS
    shift 2
    echo "== $(date -u +%T) $name (limit ${limit}s): $*" | tee -a "$STEPS"
    timeout --kill-after=10 "$limit" "$@" >"$RESULTS/$name.log" 2>&1
    local rc=$?
    echo "   $name: exit $rc after $((SECONDS - start)) s" | tee -a "$STEPS"
    tail -n 3 "$RESULTS/$name.log" | sed 's/^/   | /' | tee -a "$STEPS"
    return $rc
}

{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 || true
  "${py[@]}" -c "import torch, json; from model.common.hardware import describe; print(json.dumps(describe('cuda' if torch.cuda.is_available() else 'cpu')))"
} >"$RESULTS/machine.txt" 2>&1

# 1. Smoke: the recipe's CUDA path (precision chosen per device, GPU-resident cache, augmentation
#    on the device), a few dozen steps; its throughput sizes the real run.
step smoke 150 "${py[@]}" -m app.cli train --data "$DATA" --out "$WORK/smoke" --preset "$PRESET" \
    --stop-after-steps "$SMOKE_STEPS" --set train.knn_every=0 --set train.log_every=$(( SMOKE_STEPS / 6 > 0 ? SMOKE_STEPS / 6 : 1 ))
ips=$("${py[@]}" - "$WORK/smoke/metrics.jsonl" <<'EOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
steps = [r["images_per_s"] for r in rows if r.get("kind") == "step"][1:]  # the first window holds the warm-up
print(int(sorted(steps)[len(steps) // 2]) if steps else 0)
EOF
)
ips=${ips:-0}
epochs=$(( ips > 0 ? BUDGET_S * ips / TRAIN_IMAGES : 1 ))
epochs=$(( epochs < 1 ? 1 : epochs ))
warmup=$(( epochs / 20 > 0 ? epochs / 20 : 1 ))
echo "smoke: ${ips} images/s -> ${epochs} epochs (warm-up ${warmup}) for a ${BUDGET_S}-s budget" | tee -a "$STEPS"

# 2. The recipe, its cosine schedule laid over the epochs the budget buys; kNN every few epochs.
knn_every=$(( epochs / 8 > 0 ? epochs / 8 : 1 ))
step train $((BUDGET_S + 150)) "${py[@]}" -m app.cli train --data "$DATA" --out "$WORK/main" --preset "$PRESET" \
    --epochs "$epochs" --set train.warmup_epochs="$warmup" --set train.knn_every="$knn_every" --set train.max_minutes=$((BUDGET_S / 60 + 2))
cp "$WORK/main/metrics.jsonl" "$RESULTS/metrics.jsonl" 2>/dev/null
cp "$WORK/main/config.json" "$RESULTS/config.json" 2>/dev/null

# 3. Pipeline vs bare model: fp32, bf16, + channels_last, + torch.compile.
step pipeline 150 "${py[@]}" -m bench.pipeline --data "$DATA" --preset "$PRESET" --warmup 10 --steps 30 --no-write

# 4. Index build and evaluation with the trained encoder (embedding on the GPU).
step index 100 "${py[@]}" -m app.cli index build --encoder "$WORK/main/encoder.pt" --data "$DATA" --out "$WORK/index"
step eval 100 "${py[@]}" -m app.cli eval --encoder "$WORK/main/encoder.pt" --data "$DATA" --map-method pca \
    --out "$WORK/eval"
cp "$WORK/eval/eval.json" "$RESULTS/eval.json" 2>/dev/null

# 5. Two processes under torchrun on the one GPU (NCCL may refuse two ranks on one device).
step torchrun 45 "${py[@]}" -m torch.distributed.run --nproc-per-node 2 -m app.cli train --data "$DATA" \
    --out "$WORK/ddp" --preset "$PRESET" --stop-after-steps 10 --set train.knn_every=0 --set train.log_every=5
echo "== $(date -u +%T) done" | tee -a "$STEPS"
