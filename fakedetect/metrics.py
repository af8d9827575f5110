"""Binary detection metrics shared by training, analysis and prediction (label 1 = fake)."""
import numpy as np
from sklearn import metrics as skm


def format_metric(value, missing="n/a"):
    """A metric with three decimals, or ``missing`` when it is undefined (None)."""
    return missing if value is None else f"{value:.3f}"


def equal_error_rate(labels, fake_scores):
    """(EER, threshold): the ROC point where false-positive and false-negative rates meet
    (the closest of the scores as thresholds, the mean of the two rates there)."""
    false_positive, true_positive, thresholds = skm.roc_curve(labels, fake_scores, drop_intermediate=False)
    false_negative = 1 - true_positive
    index = 1 + int(np.nanargmin(np.abs(false_negative - false_positive)[1:]))  # [0] is "call nothing fake" (inf)
    return float((false_positive[index] + false_negative[index]) / 2), float(thresholds[index])


def mean_in_log_odds(probabilities):
    """How an ensemble averages: the probability whose log-odds is the mean of the log-odds of
    ``probabilities`` (equal-shape arrays or numbers, first axis averaged; clipped to 1e-7 from 0 and 1)."""
    probabilities = np.clip(np.asarray(probabilities, dtype=np.float64), 1e-7, 1 - 1e-7)
    return 1 / (1 + np.exp(-np.log(probabilities / (1 - probabilities)).mean(axis=0)))


def binary_metrics(labels, fake_scores, threshold=0.5):
    """Accuracy, balanced accuracy and confusion matrix at ``threshold``; AUC, EER and average
    precision over all thresholds, or None (undefined) when only one class is present."""
    labels = np.asarray(labels).astype(int)
    fake_scores = np.asarray(fake_scores, dtype=np.float64)
    predictions = (fake_scores >= threshold).astype(int)
    both_classes = len(np.unique(labels)) == 2
    result = {
        "count": int(len(labels)),
        "real_count": int((labels == 0).sum()),
        "fake_count": int((labels == 1).sum()),
        "accuracy": float((predictions == labels).mean()) if len(labels) else None,
        "balanced_accuracy": None,
        "auc": None,
        "eer": None,
        "eer_threshold": None,
        "average_precision": None,
        "confusion_matrix": skm.confusion_matrix(labels, predictions, labels=[0, 1]).tolist(),
    }
    if both_classes:
        result["balanced_accuracy"] = float(skm.balanced_accuracy_score(labels, predictions))
        result["auc"] = float(skm.roc_auc_score(labels, fake_scores))
        result["eer"], result["eer_threshold"] = equal_error_rate(labels, fake_scores)
        result["average_precision"] = float(skm.average_precision_score(labels, fake_scores))
    return result


def per_video(labels, fake_scores, videos):
    """``(video labels, video scores, video ids)``: the crops of each video (``videos[i]`` the id of crop i,
    None for a crop of no video, which is left out) pooled as predict.py scores a video, P(fake) the
    sigmoid of the mean of its crops' fake log-odds (``mean_in_log_odds``); a video's label is its crops'."""
    members = {}
    for index, video in enumerate(videos):
        if video is not None:
            members.setdefault(video, []).append(index)
    ids = sorted(members)
    labels, fake_scores = np.asarray(labels), np.asarray(fake_scores, dtype=np.float64)
    return (np.array([labels[members[video][0]] for video in ids], dtype=int),
            np.array([float(mean_in_log_odds(fake_scores[members[video]])) for video in ids]), ids)
