"""One run's numbers on its own test split and on other datasets, one row each (cross_dataset.py is the
command)."""
from fakedetect.analysis.common import dataset_root
from fakedetect.analysis.numbers import get_soft_scores_and_true_labels, split_metrics, video_ids, video_metrics
from fakedetect.data.cache import drop_unreadable
from fakedetect.data.folders import FacesDataset, dataset_name
from fakedetect.metrics import format_metric

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
