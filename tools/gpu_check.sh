#!/usr/bin/env bash
# The GPU checks, as one command: the throughput table (plain and with torch.compile) and a
# short XceptionBased training run on generated demo data through the bf16 + channels_last path.
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
