"""Judge several trained detectors and their ensemble from predict.py's CSVs.

    python tools/ensemble_table.py PREDICTIONS_DIR RUN [RUN ...] [-o table.md]

``PREDICTIONS_DIR/RUN_val.csv`` and ``RUN_test.csv`` are one run's best checkpoint scored on the
validation and test splits (``predict.py CHECKPOINT DATASET/val --csv ...``, as recipe_gpu.sh
writes them); an image's label is its folder, ``real/`` or ``fake/``. Prints one row per run and
one for the ensemble, whose score is the mean of the runs' logits: validation AUC and EER
threshold, then test accuracy and balanced accuracy at that threshold, and test AUC. The
ensemble's threshold is the one to pass to ``predict.py CKPT --ensemble CKPT ... --threshold``.
Choose the runs on validation (or fix them in advance, e.g. all seeds of one setting), never on
test.
"""
import csv
import sys
from pathlib import Path

import numpy as np

from fakedetect.cli.common import ArgumentParser, exits_on_error
from fakedetect.io.files import check_output_path
from fakedetect.metrics import binary_metrics, format_metric, mean_in_log_odds

from results_table import print_table

SPLITS = ("val", "test")


class PredictionsError(ValueError):
    """A predictions CSV is missing, unscored or does not match the others."""


def read_predictions(path):
    """``(files, labels, fake_probabilities)`` of one predict.py CSV, sorted by file."""
    path = Path(path)
    if not path.is_file():
        raise PredictionsError(f"{path}: not found; write it with predict.py CHECKPOINT DATASET/SPLIT --csv {path}")
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        missing = {"file", "fake_probability"} - set(reader.fieldnames or ())
        if missing:
            raise PredictionsError(f"{path}: no {' or '.join(sorted(missing))} column; expected a CSV written by "
                                   "predict.py --csv")
        rows = sorted(reader, key=lambda row: row["file"])
    if not rows:
        raise PredictionsError(f"{path}: holds no predictions; score a dataset split with predict.py --csv")
    failed = [row["file"] for row in rows if row.get("error") or not row.get("fake_probability")]
    if failed:
        raise PredictionsError(f"{path}: {len(failed)} images were not scored (first: {failed[0]}); fix them and "
                               f"score the split again")
    labels, probabilities = [], []
    for row in rows:
        folder = next((parent.name for parent in Path(row["file"]).parents if parent.name in ("real", "fake")), None)
        if folder is None:
            raise PredictionsError(f"{path}: {row['file']} is not in a real/ or fake/ folder, so its label is "
                                   f"unknown; score a dataset split (DATASET/val, DATASET/test)")
        labels.append(int(folder == "fake"))
        try:
            probabilities.append(float(row["fake_probability"]))
        except ValueError:
            raise PredictionsError(f"{path}: fake_probability {row['fake_probability']!r} of {row['file']} is not a "
                                   "number; score the split again with predict.py --csv") from None
    return [row["file"] for row in rows], np.array(labels), np.array(probabilities)


def ensemble_rows(predictions_dir, runs):
    """``(name, metrics)`` for each run and the ensemble: ``val_auc``, ``threshold`` (the
    validation EER threshold), ``test_accuracy`` and ``test_balanced_accuracy`` (at that
    threshold) and ``test_auc``."""
    scores = {split: [] for split in SPLITS}
    labels = {}
    for run in runs:
        for split in SPLITS:
            path = Path(predictions_dir) / f"{run}_{split}.csv"
            files, split_labels, probabilities = read_predictions(path)
            if split in labels and files != labels[split][0]:
                raise PredictionsError(f"{path}: scores other images than {runs[0]}_{split}.csv; score the same "
                                       f"split with every run")
            labels[split] = (files, split_labels)
            scores[split].append(probabilities)
    members = [(run, {split: scores[split][index] for split in SPLITS}) for index, run in enumerate(runs)]
    if len(runs) > 1:
        mean_logits = {split: mean_in_log_odds(scores[split]) for split in SPLITS}
        members.append((f"ensemble of {len(runs)} (mean logit)", mean_logits))
    rows = []
    for name, probabilities in members:
        val = binary_metrics(labels["val"][1], probabilities["val"])
        threshold = val["eer_threshold"] if val["eer_threshold"] is not None else 0.5
        test = binary_metrics(labels["test"][1], probabilities["test"], threshold)
        rows.append((name, {"val_auc": val["auc"], "threshold": threshold, "test_accuracy": test["accuracy"],
                            "test_balanced_accuracy": test["balanced_accuracy"], "test_auc": test["auc"]}))
    return rows


def ensemble_table(predictions_dir, runs):
    """Markdown table of ``ensemble_rows``."""
    lines = ["| run | val AUC | val EER threshold | test acc | test bal. acc | test AUC |", "|---|---|---|---|---|---|"]
    for name, row in ensemble_rows(predictions_dir, runs):
        test = " | ".join(format_metric(row[key]) for key in ("test_accuracy", "test_balanced_accuracy", "test_auc"))
        lines.append(f"| {name} | {format_metric(row['val_auc'])} | {row['threshold']:.4f} | {test} |")
    return "\n".join(lines)


@exits_on_error(PredictionsError)
def main(argv=None):
    parser = ArgumentParser(description=__doc__)
    parser.add_argument("predictions_dir", help="folder of RUN_val.csv and RUN_test.csv files (predict.py --csv)")
    parser.add_argument("runs", nargs="+", help="run names, e.g. sg_resnet18 sg_resnet18_seed1")
    parser.add_argument("--output", "-o", default=None, help="also write the table to this file")
    args = parser.parse_args(argv)
    inputs = [Path(args.predictions_dir) / f"{run}_{split}.csv" for run in args.runs for split in SPLITS]
    check_output_path(parser, "--output", args.output, inputs)
    table = ensemble_table(args.predictions_dir, args.runs)
    print_table(table, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
