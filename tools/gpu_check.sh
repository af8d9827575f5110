#!/usr/bin/env bash
# The GPU checks, as one command: the throughput table (plain and with torch.compile) and a
# short XceptionBased training run on generated demo data through the bf16 + channels_last path, and
# the scale benchmark (resident against memory-mapped splits).
# Results go to $OUT (default: out/gpu_check). Usage: bash tools/gpu_check.sh
set -euo pipefail
cd "$(dirname "$0")/.."  # the toolkit's root: its scripts run from there
OUT=${OUT:-out/gpu_check}
PYTHON=${PYTHON:-python3}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
$PYTHON tools/bench.py --json "$OUT/bench.json" 2>&1 | grep -v "it/s" | tee "$OUT/bench.txt"
$PYTHON tools/bench.py --models XceptionBased --compile --json "$OUT/bench_compile.json" 2>&1 | grep -v "it/s" | tee "$OUT/bench_compile.txt"
WORK=$(mktemp -d)  # the demo data and the run's files: a fresh folder on every run
trap 'rm -rf "$WORK"' EXIT
$PYTHON demo_data.py --output "$WORK/data" | tail -n 3
$PYTHON train_main.py -m XceptionBased --no-pretrained -d demo_fakes --data-root "$WORK/data" -o Adam --lr 0.0001 \
    -b 64 -e 3 --out-dir "$WORK/out" --checkpoint-dir "$WORK/ck" --cache-dir "$WORK/cache" 2>&1 \
    | grep -v "it/s" | tee "$OUT/train_xception_demo.txt"
cp "$WORK"/out/*.json "$OUT/"
# The scale check: XceptionBased at batch 128, bf16, the split resident on the GPU against memory-mapped and
# gathered by the prefetcher (goal: mapped >= 0.95 x resident), and on 2 processes where there are 2 GPUs.
PROCESSES="1"
if [ "$(nvidia-smi -L | wc -l)" -ge 2 ]; then PROCESSES="1 2"; fi
$PYTHON tools/bench_scale.py --images 12000 --model XceptionBased --batch-size 128 --device cuda --epochs 2 \
    --placements device mapped --processes $PROCESSES --work-dir "$WORK/scale" --json "$OUT/bench_scale.json" \
    2>&1 | grep -v "it/s" | tee "$OUT/bench_scale.txt"
