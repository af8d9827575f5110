#!/usr/bin/env bash
# The self-blending protocol of docs/results.md on FaceForensics++, from random weights, on one CUDA GPU:
#
#     bash tools/self_blend_gpu.sh /path/to/ffpp_c23_videos [OUT_DIR]
#
# 1. identity-safe face crops with landmarks (build_faces_dataset.py --group-by pair, 32 frames a video),
#    skipped when OUT_DIR/data/ffpp_faces exists;
# 2. one link view per manipulation method (tools/method_views.py) and the demo datasets;
# 3. MODEL trained --real-only --self-blend 0.5 on the originals, then on Deepfakes only without and with
#    --self-blend 0.3;
# 4. one cross_dataset.py table per run (frame and video AUC, AP, EER) in OUT_DIR/figures;
# every run once per seed of SEEDS (default 0 1 2), then the mean and spread over seeds of each table cell
# that the goals read (OUT_DIR/figures/seeds.md).
# DEVICE=cpu MODEL=SimpleNet EPOCHS=1 SEEDS=0 tries it on the CPU. Nothing is downloaded.
set -euo pipefail
FFPP=${1:?usage: bash tools/self_blend_gpu.sh /path/to/ffpp_c23_videos [OUT_DIR]}
OUT=${2:-self_blend_gpu_out}
MODEL=${MODEL:-XceptionBased}
EPOCHS=${EPOCHS:-40}
DEVICE=${DEVICE:-cuda}
PYTHON=${PYTHON:-python}
SEEDS=${SEEDS:-0 1 2}
FFPP=$(cd "$FFPP" && pwd)
cd "$(dirname "$0")/.."  # the toolkit's root: its scripts run from there
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
DATA="$OUT/data"
export PYTHONUNBUFFERED=1
if [ ! -d "$DATA/ffpp_faces" ]; then
    for method in Deepfakes Face2Face FaceSwap; do  # a folder of the three methods' folders, made of links
        mkdir -p "$OUT/fakes/$method"
        ln -sf "$FFPP/$method"/*.mp4 "$OUT/fakes/$method/"
    done
    $PYTHON build_faces_dataset.py --real "$FFPP/original" --fake "$OUT/fakes" -o "$DATA/ffpp_faces" --frames 32 \
        --group-by pair --ratios 0.6 0.2 0.2 2>&1 | grep -v "s/source" | tee "$OUT/build.txt"
fi
for method in Deepfakes Face2Face FaceSwap; do
    view="$DATA/ffpp_$(echo "$method" | tr '[:upper:]' '[:lower:]')"
    [ -d "$view" ] || $PYTHON tools/method_views.py "$DATA/ffpp_faces" --methods "$method" -o "$view"
done
[ -d "$DATA/demo_fakes" ] || $PYTHON demo_data.py --output "$DATA" | tail -n 2
WEIGHTS=()
[ "$MODEL" = XceptionBased ] && WEIGHTS=(--no-pretrained)  # random weights: nothing to download
RUN=(-m "$MODEL" "${WEIGHTS[@]}" --data-root "$DATA" --device "$DEVICE" -e "$EPOCHS" --out-dir "$OUT/out"
     --checkpoint-dir "$OUT/checkpoints" --cache-dir "$OUT/cache")
SCORE=(-m "$MODEL" --data-root "$DATA" --device "$DEVICE" --out-dir "$OUT/out" --checkpoint-dir "$OUT/checkpoints"
       --figures-dir "$OUT/figures")
train() {  # NAME DATASET FLAGS...: one run, its log kept
    local name=$1 dataset=$2
    shift 2
    $PYTHON train_main.py -d "$dataset" --run-name "$name" "${RUN[@]}" "$@" 2>&1 | grep -v "it/s" > "$OUT/$name.txt"
    tail -n 4 "$OUT/$name.txt"
}
for seed in $SEEDS; do
    train "sbi_s$seed" ffpp_faces --seed "$seed" --real-only --self-blend 0.5
    $PYTHON cross_dataset.py -d ffpp_faces --run-name "sbi_s$seed" "${SCORE[@]}" --eval-dataset ffpp_deepfakes \
        --eval-dataset ffpp_face2face --eval-dataset ffpp_faceswap --eval-dataset demo_fakes 2>&1 | grep -v "it/s"
    for blend in 0 0.3; do
        train "deepfakes_sb${blend}_s$seed" ffpp_deepfakes --seed "$seed" --self-blend "$blend"
        $PYTHON cross_dataset.py -d ffpp_deepfakes --run-name "deepfakes_sb${blend}_s$seed" "${SCORE[@]}" \
            --eval-dataset ffpp_face2face --eval-dataset ffpp_faceswap 2>&1 | grep -v "it/s"
    done
done
$PYTHON - "$OUT/figures" <<'SUMMARY' | tee "$OUT/figures/seeds.md"
import json, statistics, sys
from pathlib import Path
cells = {}  # (setting, dataset, level) -> the AUC of each seed
for path in sorted(Path(sys.argv[1]).glob("*_s*_cross_dataset.json")):
    setting = path.name[:-len("_cross_dataset.json")].rsplit("_s", 1)[0]
    for result in json.loads(path.read_text())["results"]:
        cells.setdefault((setting, result["dataset"], "frame"), []).append(result["auc"])
        if "video_level" in result:
            cells.setdefault((setting, result["dataset"], "video"), []).append(result["video_level"]["auc"])
print("| run | evaluated on | level | seeds | mean AUC | sd |\n|---|---|---|---|---|---|")
for (setting, dataset, level), values in cells.items():
    values = [value for value in values if value is not None]
    spread = f"{statistics.stdev(values):.3f}" if len(values) > 1 else "n/a"
    mean = f"{statistics.mean(values):.3f}" if values else "n/a"
    print(f"| {setting} | {dataset} | {level} | {len(values)} | {mean} | {spread} |")
SUMMARY
echo "tables: $OUT/figures/*_cross_dataset.md"
