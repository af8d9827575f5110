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

from analysis_common import add_run_arguments, dataset_root, exits_on_error, load_run_model, parse_args
from cli import ArgumentParser
from faces_dataset import SPLITS, FacesDataset, dataset_name, drop_unreadable
from fileio import atomic_write, write_json
from metrics import format_metric
from numerical_analysis import get_soft_scores_and_true_labels, split_metrics, video_ids, video_metrics

COLUMNS = (("AUC", "auc"), ("AP", "average_precision"), ("EER", "eer"), ("acc", "accuracy"),
           ("bal. acc", "balanced_accuracy"))


def evaluate_datasets(model, checkpoint, names, data_root, split, batch_size):
    """[(dataset name, metrics)] of the checkpoint on ``split`` of each dataset in ``names``."""
    rows = []
    for name in names:
        dataset = drop_unreadable(FacesDataset(dataset_root(name, data_root) / split, require_both_classes=False),
                                  progress=False)
        _, fake_scores, labels = get_soft_scores_and_true_labels(dataset, model, checkpoint["normalization"],
                                                                 batch_size, progress=True)
        metrics = split_metrics(labels, fake_scores, checkpoint)
        videos = video_ids(dataset)
        if videos is not None:
            metrics["video_level"] = video_metrics(labels, fake_scores, videos, metrics["threshold"])
        rows.append((dataset_name(dataset_root(name, data_root)), metrics))
    return rows


def format_table(rows, trained_on, split):
    """Markdown: one row per dataset, the run's own first (in-domain), then the others (cross-dataset)."""
    lines = [f"| evaluated on ({split}) | | images (real / fake) | " + " | ".join(name for name, _ in COLUMNS)
             + " | videos (real / fake) | video AUC | video EER |", "|---|---|---|" + "---|" * (len(COLUMNS) + 3)]
    for name, metrics in rows:
        kind = "in-domain" if name == trained_on else "cross-dataset"
        cells = [format_metric(metrics[key]) for _, key in COLUMNS]
        video = metrics.get("video_level")
        cells += ([f"{video['count']} ({video['real_count']} / {video['fake_count']})", format_metric(video["auc"]),
                   format_metric(video["eer"])] if video else ["no videos", "", ""])
        lines.append(f"| {name} | {kind} | {metrics['count']} ({metrics['real_count']} / {metrics['fake_count']}) | "
                     + " | ".join(cells) + " |")
    return "\n".join(lines)


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
