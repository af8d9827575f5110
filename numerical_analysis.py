"""ROC and DET curves and the metrics of a run: ``python numerical_analysis.py -m SimpleNet -d demo_fakes``
(fakedetect.cli.numerical_analysis)."""
import sys

from fakedetect.analysis.numbers import (analyse_scores, get_soft_scores_and_true_labels, plot_det_curve,
                                         plot_roc_curve, video_ids)
from fakedetect.cli.numerical_analysis import main

__all__ = ["analyse_scores", "get_soft_scores_and_true_labels", "main", "plot_det_curve", "plot_roc_curve", "video_ids"]

if __name__ == "__main__":
    sys.exit(main())
