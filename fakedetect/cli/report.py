"""Every figure and number of a trained run, in one command.

    python report.py -m SimpleNet -d demo_fakes -o AdamW
    python report.py -m SimpleNet -d demo_fakes -o AdamW --eval-dataset demo_synthetic

Reads the run's ``out/{dataset}_{model}_{optimizer}.json`` and best checkpoint
``checkpoints/{dataset}_{model}_{optimizer}.pt`` and writes into ``--figures-dir``, every file
named after the run (``{dataset}_{model}_{optimizer}_...``): sample images, the loss/accuracy
curves, ROC and DET curves with the metrics table, gradient saliency and Grad-CAM figures, the
explanation scores against the ground-truth masks (when the evaluated split has ``masks/``) and
``..._summary.json``. ``--self-blend-scores`` also scores the explanations of pseudo-fakes made
from the split's real images (fakedetect/data/self_blend.py, drawn with ``--seed``) against their blend masks,
which any split with landmarks has, fakes or no fakes (``..._blend_mask_scores.json``).
"""
import importlib.util
import sys

from fakedetect.analysis.common import (dataset_root, evaluated_name, figure_prefix, load_history, load_run_model,
                                        load_split)
from fakedetect.analysis.curves import plot_accuracy_and_loss
from fakedetect.analysis.grad_cam_figures import grad_cam_analysis
from fakedetect.analysis.numbers import analyse_scores, get_soft_scores_and_true_labels, video_ids
from fakedetect.analysis.report import blend_mask_table, explanation_table
from fakedetect.analysis.saliency_figures import saliency_analysis
from fakedetect.analysis.samples import plot_samples
from fakedetect.cli.analysis_common import add_run_arguments, exits_on_error, parse_args
from fakedetect.cli.common import ArgumentParser
from fakedetect.data.folders import LANDMARKS_FILE, FacesDataset, dataset_name
from fakedetect.explain.grad_cam import EXPLAIN_CHOICES
from fakedetect.explain.scores import format_scores_table
from fakedetect.io.files import write_json
from fakedetect.io.runs import operating_threshold


@exits_on_error
def main(argv=None):
    parser = ArgumentParser(description=__doc__)
    add_run_arguments(parser).add_argument("--explain", default="predicted", choices=EXPLAIN_CHOICES,
                                           help="class the single-image and grid Grad-CAM figures explain (default: predicted)")
    parser.add_argument("--self-blend-scores", action="store_true",
                        help="also score the explanations against blend masks: the split's real images listed in "
                             f"its {LANDMARKS_FILE} made pseudo-fakes of themselves (fakedetect/data/self_blend.py, drawn with --seed)")
    args = parse_args(parser, argv)
    history = load_history(args)
    model, checkpoint = load_run_model(args)
    normalization = checkpoint["normalization"]
    dataset = load_split(args)
    prefix = figure_prefix(args)
    figures = []

    samples = [(dataset_name(args.dataset), FacesDataset(dataset_root(args.dataset, args.data_root) / "train"))]
    if evaluated_name(args) != dataset_name(args.dataset):
        samples.append((f"{evaluated_name(args)}/{args.split}", dataset))
    figures.append(plot_samples(samples, 3, args.seed, f"{args.figures_dir}/{prefix}_datasets_samples.png"))
    figures += plot_accuracy_and_loss(history, args.figures_dir)

    real_scores, fake_scores, labels = get_soft_scores_and_true_labels(dataset, model, normalization, args.batch_size,
                                                                       progress=True)
    metrics, drawn = analyse_scores(labels, real_scores, fake_scores, args, checkpoint, video_ids(dataset))
    figures += drawn

    explanations = {}
    drawn, explanations["saliency"] = saliency_analysis(model, normalization, dataset, args,
                                                        operating_threshold(checkpoint))
    figures += drawn
    if importlib.util.find_spec("pytorch_grad_cam") is None:
        print("note: Grad-CAM figures skipped: the grad-cam package is not installed (pip install grad-cam)")
    else:
        drawn, explanations["Grad-CAM"] = grad_cam_analysis(model, normalization, dataset, args, args.explain)
        figures += drawn

    table = None
    if explanations["saliency"]["scores"]["map"]:
        table = explanation_table(explanations)
        print(f"\nexplanations of the fakes of {evaluated_name(args)}/{args.split} (true class) against their masks:")
        print(format_scores_table(table))
        write_json(f"{args.figures_dir}/{prefix}_explanation_scores.json", table)
    else:
        print(f"note: {dataset.root_path} has no masks/ folder; explanation scores skipped")
    blend_table = None
    if args.self_blend_scores:
        blend_table = blend_mask_table(model, normalization, dataset, explanations, args)

    summary = {"run_name": args.run.name, "model": args.model, "trained_on": dataset_name(args.dataset),
               "optimizer": args.optimizer, "evaluated_on": evaluated_name(args), "split": args.split,
               "run_json": str(args.run.json_path), "checkpoint": str(args.run.best_path),
               "checkpoint_epoch": checkpoint["epoch"], "checkpoint_val_acc": checkpoint.get("val_acc"),
               "checkpoint_val_auc": checkpoint.get("val_auc"), "epochs": len(history["train_loss"]),
               "best_epoch": history.get("best_epoch"), "metrics": metrics, "explanation_scores": table,
               "blend_mask_scores": blend_table,
               "figures": [path.name for path in figures]}
    summary_path = f"{args.figures_dir}/{prefix}_summary.json"
    write_json(summary_path, summary)
    print(f"\n{len(figures)} figures in {args.figures_dir}/; summary: {summary_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
