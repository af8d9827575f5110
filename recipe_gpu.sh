#!/usr/bin/env bash
# The recipe comparison grid on one CUDA GPU, in about 5 minutes:
#
#     bash recipe_gpu.sh /path/to/stylegan_faces [OUT_DIR]
#
# Generates the demo datasets, trains each (dataset, model, recipe) of the grid below with
# train_main.py, and writes OUT_DIR/results_gpu.md (one table, test metrics at the epoch chosen
# on validation) plus every run's JSON and log. Runs go in priority order; once BUDGET_S seconds
# have passed no new run starts (skipped runs are listed). Needs torch, torchvision and timm;
# nothing is downloaded and all models start from random weights.
set -u
STYLEGAN=${1:?usage: bash recipe_gpu.sh /path/to/stylegan_faces [OUT_DIR]}
OUT=${2:-recipe_gpu_out}
BUDGET_S=${BUDGET_S:-270}
PYTHON=${PYTHON:-python}
cd "$(dirname "$0")"
mkdir -p "$OUT"
$PYTHON -c "import torch, timm; assert torch.cuda.is_available(), 'no CUDA device'" || exit 1
DEVICE_NAME=$($PYTHON -c "import torch; print(torch.cuda.get_device_name(0))")
[ -d "$OUT/data/demo_synthetic" ] || $PYTHON demo_data.py --out "$OUT/data" > "$OUT/demo_data.log" 2>&1
START=$SECONDS
SKIPPED=()

run() {  # run NAME DATASET [train_main flags...]
    local name=$1 dataset=$2
    shift 2
    if (( SECONDS - START > BUDGET_S )); then
        SKIPPED+=("$name")
        return
    fi
    timeout 120 $PYTHON train_main.py -d "$dataset" --device cuda --cache-dir "$OUT/cache" --out-dir "$OUT/runs/$name" \
        --checkpoint-dir "$OUT/checkpoints/$name" --overwrite "$@" > "$OUT/$name.log" 2>&1
    echo "$name: exit $? after $((SECONDS - START)) s"
}

run stylegan_resnet18_improved "$STYLEGAN" -m timm:resnet18 -e 30
run stylegan_SimpleNet_course "$STYLEGAN" -m SimpleNet --recipe course -e 15
run stylegan_SimpleNet_improved "$STYLEGAN" -m SimpleNet -e 30
for demo in demo_fakes demo_synthetic; do
    run ${demo}_SimpleNet_course "$OUT/data/$demo" -m SimpleNet --recipe course -e 10
    run ${demo}_SimpleNet_improved "$OUT/data/$demo" -m SimpleNet -e 10
    run ${demo}_resnet18_improved "$OUT/data/$demo" -m timm:resnet18 -e 10
done
run stylegan_resnet18_course "$STYLEGAN" -m timm:resnet18 --recipe course -e 30
run stylegan_efficientnet_b0_improved "$STYLEGAN" -m timm:efficientnet_b0 -e 30
run stylegan_resnet18_native_crop "$STYLEGAN" -m timm:resnet18 -e 30 --crop native
run stylegan_XceptionBased_scratch_improved "$STYLEGAN" -m XceptionBased --no-pretrained -e 20

$PYTHON results_table.py "$OUT"/runs/*/*.json --device "$DEVICE_NAME" -o "$OUT/results_gpu.md"
echo "total $((SECONDS - START)) s on $DEVICE_NAME; table: $OUT/results_gpu.md"
if (( ${#SKIPPED[@]} )); then
    echo "skipped (over the ${BUDGET_S} s budget): ${SKIPPED[*]}"
fi
