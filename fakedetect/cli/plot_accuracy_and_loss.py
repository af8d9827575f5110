"""How training went: loss, accuracy and AUC per epoch of a run, from its metrics JSON.

    python plot_accuracy_and_loss.py -m SimpleNet -d demo_fakes -o AdamW

Reads ``out/{dataset}_{model}_{optimizer}.json`` (written by train_main.py) and writes
``figures/{dataset}_{model}_{optimizer}_losses_plot.png``, ``..._accuracies_plot.png`` (train, validation
and test curves) and ``..._auc_plot.png`` (validation and test AUC, what the improved recipe
selects on), the best-on-validation epoch marked.
"""
import sys

from fakedetect.analysis.common import load_history
from fakedetect.analysis.curves import plot_accuracy_and_loss
from fakedetect.cli.analysis_common import add_run_arguments, exits_on_error, parse_args
from fakedetect.cli.common import ArgumentParser


@exits_on_error
def main(argv=None):
    parser = ArgumentParser(description=__doc__)
    args = parse_args(add_run_arguments(parser, model=False, evaluation=False), argv)
    plot_accuracy_and_loss(load_history(args), args.figures_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
