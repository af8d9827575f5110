"""Unit tests of metrics.py: the EER, the threshold-dependent metrics and the log-odds mean."""
import numpy as np
import pytest

from fakedetect.metrics import binary_metrics, equal_error_rate, mean_in_log_odds


def test_eer_finds_a_crossing_inside_a_flat_run_of_the_roc():
    # Ranked by score: 5 fakes, 10 reals, 5 fakes. Calling the top 10 fake misses half the
    # fakes and flags half the reals, so both rates are 0.5 at the 10th score; the crossing
    # lies in the middle of the ROC's flat run, which roc_curve drops by default.
    labels = [1] * 5 + [0] * 10 + [1] * 5
    scores = np.linspace(1, 0, 20)
    eer, threshold = equal_error_rate(labels, scores)
    assert eer == pytest.approx(0.5)
    assert threshold == pytest.approx(scores[9])


def test_eer_of_a_perfect_and_of_a_reversed_ranking():
    labels = [0, 0, 1, 1]
    assert equal_error_rate(labels, [0.1, 0.2, 0.8, 0.9]) == (0.0, 0.8)
    assert equal_error_rate(labels, [0.9, 0.8, 0.2, 0.1])[0] == 1.0


def test_eer_threshold_is_a_score_even_for_constant_scores():
    assert equal_error_rate([0, 0, 1, 1], [0.3] * 4) == (0.5, 0.3)  # not inf, which calls every image real


def test_binary_metrics_at_a_threshold_and_with_one_class():
    labels = [0, 0, 0, 1]
    scores = [0.1, 0.4, 0.6, 0.7]
    at_half = binary_metrics(labels, scores)
    assert at_half["accuracy"] == 0.75 and at_half["balanced_accuracy"] == pytest.approx((2 / 3 + 1) / 2)
    assert at_half["confusion_matrix"] == [[2, 1], [0, 1]]
    assert at_half["auc"] == 1.0
    at_065 = binary_metrics(labels, scores, threshold=0.65)
    assert at_065["accuracy"] == 1.0 and at_065["confusion_matrix"] == [[3, 0], [0, 1]]
    only_real = binary_metrics([0, 0], [0.2, 0.7])
    assert only_real["accuracy"] == 0.5
    assert only_real["auc"] is None and only_real["eer"] is None and only_real["balanced_accuracy"] is None


def test_mean_in_log_odds():
    assert mean_in_log_odds([0.5, 0.5]) == pytest.approx(0.5)
    # log-odds ln 9 and -ln 3 average to ln sqrt(3): probability sqrt(3) / (1 + sqrt(3))
    assert mean_in_log_odds([0.9, 0.25]) == pytest.approx(np.sqrt(3) / (1 + np.sqrt(3)))
    np.testing.assert_allclose(mean_in_log_odds([[0.9, 0.5], [0.1, 0.5]]), [0.5, 0.5])
