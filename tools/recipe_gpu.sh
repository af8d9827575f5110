#!/usr/bin/env bash
# The GPU experiment grid (the ResNet-18 learning curve, then demo runs while time is left) on one
# CUDA GPU, PARALLEL runs at a time; no run starts after BUDGET_S and none goes past RUN_LIMIT_S,
# so training ends within BUDGET_S + RUN_LIMIT_S (13 minutes at most by default; on an H200 the
# learning curve's seven runs, started at once, all finished within 293 s, docs/results.md), then
# the scoring with predict.py takes a minute or less:
#
#     bash tools/recipe_gpu.sh /path/to/stylegan_faces [OUT_DIR]
#
# Generates the demo datasets, trains each (dataset, model, recipe) of the grid below with
# train_main.py, and writes OUT_DIR/results_gpu.md (one table, test metrics at the epoch chosen
# on validation) plus every run's JSON and log, and OUT_DIR/predictions/NAME_{val,test}.csv: each
# stylegan_faces run's best checkpoint scored on those splits with predict.py (NAME_tta_*.csv: with --tta). Runs start in
# priority order, PARALLEL at a time (small models leave most of a large GPU idle); once BUDGET_S
# seconds have passed no new run starts (skipped runs are listed) and a run still going after
# RUN_LIMIT_S is stopped (its JSON keeps the epochs it finished). Needs torch, torchvision and timm; nothing is downloaded and all
# models start from random weights. DEVICE=cpu runs the same grid on the CPU (for trying it out).
set -u
STYLEGAN=${1:?usage: bash tools/recipe_gpu.sh /path/to/stylegan_faces [OUT_DIR]}
OUT=${2:-recipe_gpu_out}
BUDGET_S=${BUDGET_S:-330}
RUN_LIMIT_S=${RUN_LIMIT_S:-450}
PARALLEL=${PARALLEL:-7}
DEVICE=${DEVICE:-cuda}
EPOCHS=${EPOCHS:-80}
PYTHON=${PYTHON:-python}
cd "$(dirname "$0")/.."  # the toolkit's root: its scripts run from there
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
if [ "$DEVICE" = cuda ]; then
    $PYTHON -c "import torch, timm; assert torch.cuda.is_available(), 'no CUDA device'" || exit 1
    DEVICE_NAME=$($PYTHON -c "import torch; print(torch.cuda.get_device_name(0))")
else
    DEVICE_NAME=$DEVICE
fi
[ -d "$OUT/data/demo_synthetic" ] || $PYTHON demo_data.py --output "$OUT/data" > "$OUT/demo_data.log" 2>&1 &
DEMO_DATA=$!
START=$SECONDS
SKIPPED=()
NAMES=()

run() {  # run NAME DATASET [train_main flags...]: start it once a slot is free and the budget allows
    local name=$1 dataset=$2
    shift 2
    while (( $(jobs -rp | grep -cvx "$DEMO_DATA") >= PARALLEL )); do wait -n; done
    if (( SECONDS - START > BUDGET_S )); then
        SKIPPED+=("$name")
        return
    fi
    NAMES+=("$name")
    (
        timeout "$RUN_LIMIT_S" $PYTHON train_main.py -d "$dataset" --device "$DEVICE" --cache-dir "$OUT/cache" \
            --out-dir "$OUT/runs/$name" --checkpoint-dir "$OUT/checkpoints/$name" --overwrite "$@" \
            > "$OUT/$name.log" 2>&1
        echo "$name: exit $? at $((SECONDS - START)) s"
    ) &
}

# stylegan_faces: the best measured setting (ResNet-18, lr 1e-3, a long cosine schedule, mixup 0.2;
# patience 0: every run goes the full length and the best epoch is still chosen on validation AUC),
# then its learning curve: the same on half and a quarter of the training images (--train-fraction)
# for the same number of optimizer steps (2x and 4x the epochs), two seeds each; then a third seed
# of the full setting (measured: docs/results.md, "the ResNet-18 learning curve"; the README's best
# command trains 240 epochs instead of EPOCHS). The demo runs start only if a slot frees within
# BUDGET_S.
BEST=(-m timm:resnet18 --lr 1e-3 --patience 0 --mixup 0.2)
for seed in 0 1; do run sg_resnet18_mixup_seed$seed "$STYLEGAN" "${BEST[@]}" -e "$EPOCHS" --seed $seed; done
for seed in 0 1; do
    run sg_resnet18_mixup_half_seed$seed "$STYLEGAN" "${BEST[@]}" -e $((2 * EPOCHS)) \
        --train-fraction 0.5 --seed $seed
done
for seed in 0 1; do
    run sg_resnet18_mixup_quarter_seed$seed "$STYLEGAN" "${BEST[@]}" -e $((4 * EPOCHS)) \
        --train-fraction 0.25 --seed $seed
done
run sg_resnet18_mixup_seed2 "$STYLEGAN" "${BEST[@]}" -e "$EPOCHS" --seed 2
wait "$DEMO_DATA"
for demo in demo_fakes demo_synthetic; do
    run ${demo}_SimpleNet_course "$OUT/data/$demo" -m SimpleNet --recipe course -e 10
    run ${demo}_SimpleNet_improved "$OUT/data/$demo" -m SimpleNet -e 10
    run ${demo}_resnet18_mixup "$OUT/data/$demo" -m timm:resnet18 -e 30 --patience 0 --mixup 0.2
done
wait

# Every run's best checkpoint scores the validation and test images (predict.py CSVs), so that ensembles
# of runs can be judged afterwards: python tools/ensemble_table.py OUT_DIR/predictions RUN [RUN ...].
mkdir -p "$OUT/predictions"
for name in "${NAMES[@]}"; do
    [[ $name == sg_* ]] || continue
    for checkpoint in "$OUT"/checkpoints/"$name"/*.pt; do
        [[ -f "$checkpoint" && "$checkpoint" != *_last.pt ]] || continue
        for split in val test; do
            $PYTHON predict.py "$checkpoint" "$STYLEGAN/$split" --device "$DEVICE" --no-progress \
                --csv "$OUT/predictions/${name}_$split.csv" > /dev/null 2>> "$OUT/predictions.log" &
            $PYTHON predict.py "$checkpoint" "$STYLEGAN/$split" --device "$DEVICE" --no-progress --tta \
                --csv "$OUT/predictions/${name}_tta_$split.csv" > /dev/null 2>> "$OUT/predictions.log" &
        done
        while (( $(jobs -rp | wc -l) >= 2 * PARALLEL )); do wait -n; done
    done
done
wait

JSONS=()
for name in "${NAMES[@]}"; do
    for json in "$OUT"/runs/"$name"/*.json; do [ -f "$json" ] && JSONS+=("$json"); done
done
if (( ${#JSONS[@]} )); then
    $PYTHON tools/results_table.py "${JSONS[@]}" --device "$DEVICE_NAME" -o "$OUT/results_gpu.md"
else
    echo "no run finished an epoch; see the logs in $OUT"
fi
echo "total $((SECONDS - START)) s on $DEVICE_NAME; table: $OUT/results_gpu.md"
if (( ${#SKIPPED[@]} )); then
    echo "skipped (over the ${BUDGET_S} s budget): ${SKIPPED[*]}"
fi
