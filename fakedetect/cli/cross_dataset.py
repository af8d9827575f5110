"""In-domain and cross-dataset numbers of one trained run, in one table.

    python cross_dataset.py -m SimpleNet -d demo_fakes --eval-dataset demo_synthetic
    python cross_dataset.py -d my_faces --run-name sbi_s0 --eval-dataset ffpp_deepfakes --eval-dataset celeb_df

Scores the ``--split`` (default test) of the run's own dataset and of every ``--eval-dataset``
with the run's best checkpoint (chosen on validation at training time: nothing here is chosen
on these splits) and prints one row each: images, AUC, average precision, EER, and accuracy and
balanced accuracy at the checkpoint's validation EER threshold; for a dataset built from videos
(build_faces_dataset.py's manifest has a video column) also the video-level AUC and EER, a video's
score pooling its crops as numerical_analysis.py does. Writes the table to
``{figures-dir}/{run}_cross_dataset.md`` and the numbers to ``..._cross_dataset.json``.
"""
import sys
from pathlib import Path

from fakedetect.analysis.common import load_run_model
from fakedetect.analysis.cross_dataset import evaluate_datasets, format_table
from fakedetect.cli.analysis_common import add_run_arguments, exits_on_error, parse_args
from fakedetect.cli.common import ArgumentParser
from fakedetect.data.folders import SPLITS, dataset_name
from fakedetect.io.files import atomic_write, write_json


@exits_on_error
def main(argv=None):
    parser = ArgumentParser(description=__doc__)
    add_run_arguments(parser, evaluation=False)
    parser.add_argument("--eval-dataset", dest="eval_datasets", action="append", default=[], metavar="DATASET",
                        help="another dataset to evaluate on (repeatable): a name under --data-root or a path")
    parser.add_argument("--split", default="test", choices=SPLITS, help="split evaluated (default: test)")
    args = parse_args(parser, argv)
    model, checkpoint = load_run_model(args)
    trained_on = dataset_name(args.dataset)
    rows = evaluate_datasets(model, checkpoint, [args.dataset, *args.eval_datasets], args.data_root, args.split,
                             args.batch_size)
    table = format_table(rows, trained_on, args.split)
    print(f"\n{args.run.name} (best epoch {checkpoint['epoch']} on validation, threshold "
          f"{rows[0][1]['threshold']:.3f}: {rows[0][1]['threshold_source']}):\n\n{table}")
    prefix = Path(args.figures_dir) / f"{args.run.name}_cross_dataset"
    atomic_write(f"{prefix}.md", lambda tmp: Path(tmp).write_text(table + "\n"))
    write_json(f"{prefix}.json", {"run_name": args.run.name, "trained_on": trained_on, "split": args.split,
                                  "checkpoint_epoch": checkpoint["epoch"],
                                  "results": [{"dataset": name, **metrics} for name, metrics in rows]})
    print(f"\nwrote {prefix}.md and {prefix}.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
