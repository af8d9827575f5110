"""How good a trained detector is at every threshold: its scores on a split, ROC and DET curves, the metrics
at the checkpoint's threshold and, for datasets built from videos, per video; numerical_analysis.py is the
command."""
import csv
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
from scipy.stats import norm
from sklearn.metrics import DetCurveDisplay, roc_curve

from fakedetect.analysis.common import evaluated_name, figure_prefix, save
from fakedetect.data.batches import normalized_batches
from fakedetect.data.folders import dataset_name
from fakedetect.io.files import write_json
from fakedetect.io.runs import operating_threshold
from fakedetect.metrics import binary_metrics, format_metric, per_video
from fakedetect.models.registry import model_device


def get_soft_scores_and_true_labels(dataset, model, normalization, batch_size=32, progress=False):
    """Softmax probabilities of "real" and "fake" and the true labels of every image of ``dataset``.

    ``dataset`` is a FacesDataset (its own transform is ignored): images are fed as training
    evaluates them, uint8 pixels normalized with the checkpoint's ``normalization`` (mean, std),
    in batches on the model's device. Returns ``(real_scores, fake_scores, labels)`` as numpy arrays.
    """
    real, fake, labels = [], [], []
    batches = normalized_batches(dataset, normalization, model_device(model), batch_size,
                                 desc="scoring" if progress else None)
    with torch.inference_mode():
        for images, batch_labels in batches:
            probabilities = torch.softmax(model(images).float(), dim=1).cpu()
            real.append(probabilities[:, 0])
            fake.append(probabilities[:, 1])
            labels.append(batch_labels.cpu())
    return torch.cat(real).numpy(), torch.cat(fake).numpy(), torch.cat(labels).numpy()


def video_ids(dataset):
    """The source video of every image of ``dataset`` (a split of a build_faces_dataset.py dataset), read from
    ``<dataset>/manifest.csv``; None for an image of no video; None instead of the list when the manifest is
    missing, has no ``video`` column or gives no image a video."""
    manifest = Path(dataset.root_path).parent / "manifest.csv"
    if not manifest.is_file():
        return None
    with open(manifest, newline="") as f:
        reader = csv.DictReader(f)
        if "video" not in (reader.fieldnames or ()):
            return None
        video_of = {row["image"]: row["video"] for row in reader if row.get("image") and row.get("video")}
    root = Path(dataset.root_path).parent
    videos = [video_of.get(Path(file).relative_to(root).as_posix()) for file in dataset.files]
    return videos if any(video is not None for video in videos) else None


def video_metrics(labels, fake_scores, videos, threshold):
    """``binary_metrics`` of the videos (``per_video``) at ``threshold``, plus ``videos``, their count."""
    video_labels, video_scores, ids = per_video(labels, fake_scores, videos)
    return {**binary_metrics(video_labels, video_scores, threshold), "videos": len(ids),
            "crops": int(sum(video is not None for video in videos))}


def format_frame_and_video(metrics, video):
    """Frame-level and video-level AUC, EER and accuracy side by side."""
    rows = [("", "frames", "videos"), ("count (real / fake)", f"{metrics['count']} ({metrics['real_count']} / "
                                       f"{metrics['fake_count']})", f"{video['count']} ({video['real_count']} / "
                                       f"{video['fake_count']})")]
    rows += [(name, format_metric(metrics[key]), format_metric(video[key]))
             for name, key in (("AUC", "auc"), ("EER", "eer"), (f"accuracy at {metrics['threshold']:.3f}", "accuracy"))]
    return "\n".join(f"  {name:<22} {frames:>16} {videos:>16}" for name, frames, videos in rows)


def one_class_note(labels, where):
    """A message when ``labels`` hold one class only (threshold-free metrics undefined), else None."""
    present = np.unique(labels)
    if len(present) == 2:
        return None
    only = "fake" if present[0] == 1 else "real"
    return (f"note: {where} holds {only} images only; AUC, EER, average precision and the ROC/DET curves "
            "need both classes and are skipped (accuracy is still reported)")


def plot_roc_curve(labels, real_scores, fake_scores, title, path):
    """ROC of both scores against "fake" as the positive class, AUC in the legend."""
    fig, ax = plt.subplots(figsize=(5.5, 5))
    for scores, name, style in ((fake_scores, "P(fake)", "-"), (real_scores, "P(real)", "--")):
        false_positive, true_positive, _ = roc_curve(labels, scores)
        auc = binary_metrics(labels, scores)["auc"]
        ax.plot(false_positive, true_positive, style, lw=2, label=f"{name} as fake score (AUC = {auc:.3f})")
    ax.plot([0, 1], [0, 1], ":", color="grey", label="chance (AUC = 0.5)")
    ax.set(xlim=(0, 1), ylim=(0, 1.01), xlabel="false positive rate (real called fake)",
           ylabel="true positive rate (fake detected)", title=title)
    ax.set_aspect("equal")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14))
    return save(fig, path)


def plot_det_curve(labels, fake_scores, eer, title, path):
    """scikit-learn's DET curve (normal-deviate axes) with the equal error rate marked."""
    fig, ax = plt.subplots(figsize=(5.5, 5))
    DetCurveDisplay.from_predictions(labels, fake_scores, ax=ax, name="P(fake)", lw=2)
    limits = ax.get_xlim()
    ax.plot(limits, limits, ":", color="grey", label="FPR = FNR")
    point = norm.ppf(np.clip(eer, 1e-3, 1 - 1e-3))
    ax.plot(point, point, "o", color="crimson", ms=8, label=f"EER = {eer:.3f}")
    ax.set(xlim=limits, ylim=limits, title=title, xlabel="false positive rate (real called fake)",
           ylabel="false negative rate (fake missed)")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=3)
    return save(fig, path)


def format_metrics(metrics):
    """The metrics as a small aligned table."""
    (tn, fp), (fn, tp) = metrics["confusion_matrix"]
    at = f"at {metrics['threshold']:.3f}"
    rows = [("images (real / fake)", f"{metrics['count']} ({metrics['real_count']} / {metrics['fake_count']})"),
            ("AUC", format_metric(metrics["auc"])), ("EER", format_metric(metrics["eer"])),
            ("average precision", format_metric(metrics["average_precision"])),
            ("threshold on P(fake)", f"{metrics['threshold']:.3f} ({metrics['threshold_source']})"),
            (f"accuracy {at}", format_metric(metrics["accuracy"])),
            (f"balanced accuracy {at}", format_metric(metrics["balanced_accuracy"])),
            (f"confusion {at} (true real)", f"{tn} called real, {fp} called fake"),
            (f"confusion {at} (true fake)", f"{fn} called real, {tp} called fake"),
            ("accuracy at 0.5 (as in training)", format_metric(metrics["accuracy_at_0.5"])),
            ("balanced accuracy at 0.5", format_metric(metrics["balanced_accuracy_at_0.5"]))]
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"  {name:<{width}}  {value}" for name, value in rows)


def split_metrics(labels, fake_scores, checkpoint):
    """``binary_metrics`` at the checkpoint's operating threshold (its validation EER point, as
    predict.py decides), plus accuracy and balanced accuracy at 0.5 as the training JSON counts them."""
    threshold = operating_threshold(checkpoint)
    source = ("the checkpoint's validation EER threshold" if checkpoint.get("threshold") is not None
              else "the checkpoint has no validation threshold")
    at_half = binary_metrics(labels, fake_scores)
    return {**binary_metrics(labels, fake_scores, threshold), "threshold": float(threshold),
            "threshold_source": source, "accuracy_at_0.5": at_half["accuracy"],
            "balanced_accuracy_at_0.5": at_half["balanced_accuracy"]}


def analyse_scores(labels, real_scores, fake_scores, args, checkpoint, videos=None):
    """Metrics of the scores printed and written to ``..._metrics.json``; ROC and DET drawn when
    both classes are present; with ``videos`` (``video_ids``) the video-level metrics too, as
    ``metrics["video_level"]``. Returns (metrics, list of figure paths)."""
    prefix, where = figure_prefix(args), f"{evaluated_name(args)}/{args.split}"
    metrics = split_metrics(labels, fake_scores, checkpoint)
    print(f"\n{args.model} trained on {dataset_name(args.dataset)} (epoch {checkpoint['epoch']}), evaluated on {where}:")
    print(format_metrics(metrics))
    if videos is not None:
        metrics["video_level"] = video_metrics(labels, fake_scores, videos, metrics["threshold"])
        print(f"\nframe level and video level (a video's P(fake): the sigmoid of its crops' mean fake log-odds; "
              f"{metrics['video_level']['crops']} crops of {metrics['video_level']['videos']} videos):")
        print(format_frame_and_video(metrics, metrics["video_level"]))
    figures = []
    note = one_class_note(labels, where)
    if note:
        print(note)
    else:
        title = f"{args.model} ({dataset_name(args.dataset)}) on {where}"
        figures.append(plot_roc_curve(labels, real_scores, fake_scores, f"ROC: {title}",
                                      f"{args.figures_dir}/{prefix}_roc_curve.png"))
        figures.append(plot_det_curve(labels, fake_scores, metrics["eer"], f"DET: {title}",
                                      f"{args.figures_dir}/{prefix}_det_curve.png"))
    json_path = f"{args.figures_dir}/{prefix}_metrics.json"
    write_json(json_path, {"model": args.model, "trained_on": dataset_name(args.dataset), "checkpoint_epoch": checkpoint["epoch"],
                           "evaluated_on": evaluated_name(args), "split": args.split, **metrics, "note": note})
    print(f"wrote {json_path}")
    return metrics, figures
