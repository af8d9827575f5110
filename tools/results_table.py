"""Summarize training runs as the Markdown table of docs/results.md.

    python tools/results_table.py out/*.json [--device "1 CPU thread"] [-o table.md]

One row per run's JSON: dataset, model, recipe (and where the run's settings differ from that
recipe's current values, the training fraction when not 1, and the seed when not 0), epochs
run, the validation-chosen epoch and the test accuracy, balanced accuracy and AUC at that
epoch (test is read there only), the best validation metric, and the seconds spent in
training + evaluation epochs.
"""
import json
import sys
from pathlib import Path

from fakedetect.cli.common import ArgumentParser, exits_on_error
from fakedetect.config.recipe import RECIPES
from fakedetect.io.files import atomic_write, check_output_path
from fakedetect.metrics import format_metric


class RunFileError(ValueError):
    """A run JSON that is missing or not written by train_main.py."""


def run_row(history, device):
    """The table row of one run's history (its JSON)."""
    config = history.get("config", {})
    best = history["best_epoch"]
    at = (best - 1) if best else None
    planned = config.get("epochs")
    if history.get("stopped_early"):
        stopped = f" (stopped early at {history['stopped_early']})"
    elif planned and len(history["train_loss"]) < planned:
        stopped = f" of {planned} (unfinished)"
    else:
        stopped = ""
    metric = history.get("selection_metric", "val_acc")
    recipe = config.get("recipe", "?")
    differences = [f"{key} {config[key]}" for key, value in RECIPES.get(recipe, {}).items()
                   if key != "epochs" and key in config and config[key] != value]
    if config.get("train_fraction", 1) != 1:
        differences.append(f"train_fraction {config['train_fraction']:g}")
    if config.get("seed", 0) != 0:
        differences.append(f"seed {config['seed']}")
    recipe = " + ".join([recipe, *differences])
    cells = [Path(config.get("dataset", history["dataset"])).name, history["model"], recipe,
             f"{len(history['train_loss'])}{stopped}", str(best),
             f"{metric} {format_metric(history[metric][at]) if at is not None else 'n/a'}",
             *(format_metric(history[key][at]) if at is not None else "n/a"
               for key in ("test_acc", "test_balanced_acc", "test_auc")),
             f"{sum(history['epoch_seconds']):.0f}", device or config.get("device", "?")]
    return "| " + " | ".join(cells) + " |"


def results_table(paths, device=None):
    """Markdown table of the runs whose JSON files are ``paths``."""
    lines = ["| dataset | model | recipe | epochs | chosen epoch | chosen on | test acc | test bal. acc | test AUC "
             "| train+eval s | device |", "|" + "---|" * 11]
    for path in paths:
        try:
            lines.append(run_row(json.loads(Path(path).read_text()), device))
        except (OSError, ValueError, KeyError) as error:
            reason = f"no {error} key" if isinstance(error, KeyError) else str(error).splitlines()[0][:120]
            raise RunFileError(f"{path}: not a run JSON written by train_main.py ({reason})") from None
    return "\n".join(lines)


def print_table(table, output=None):
    """Print a Markdown ``table`` and, when ``output`` is given, also write it there (atomically)."""
    print(table)
    if output:
        atomic_write(output, lambda tmp: Path(tmp).write_text(table + "\n"))


@exits_on_error(RunFileError)
def main(argv=None):
    parser = ArgumentParser(description=__doc__)
    parser.add_argument("runs", nargs="+", help="run JSON files written by train_main.py")
    parser.add_argument("--device", default=None, help="device column text (default: the run's --device)")
    parser.add_argument("--output", "-o", default=None, help="also write the table to this file")
    args = parser.parse_args(argv)
    check_output_path(parser, "--output", args.output, args.runs)
    table = results_table(args.runs, args.device)
    print_table(table, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
