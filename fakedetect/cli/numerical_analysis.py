"""How good a trained detector is at every threshold: ROC and DET curves plus a metrics table.

    python numerical_analysis.py -m SimpleNet -d demo_fakes -o AdamW
    python numerical_analysis.py -m SimpleNet -d demo_fakes -o AdamW --eval-dataset demo_synthetic

The checkpoint (``-m/-d/-o``) and the evaluated data (``--eval-dataset``, ``--split``) are
separate, so a detector trained on one dataset can be evaluated on another. Writes
``figures/{dataset}_{model}_{optimizer}_roc_curve.png``, ``..._det_curve.png`` and ``..._metrics.json``
(``{dataset}_{model}_{optimizer}_on_{eval dataset}_...`` for a cross-dataset evaluation, ``..._{split}_...``
for a split other than test). Accuracy and the confusion matrix are given at the checkpoint's
validation threshold (as predict.py decides) and accuracy also at 0.5 (as training counts it).

When the evaluated dataset was made by build_faces_dataset.py from videos (its ``manifest.csv`` has
a ``video`` column), the crops of each video are also pooled as predict.py scores a video (P(fake)
the sigmoid of their mean fake log-odds) and the video-level metrics are given beside the
frame-level ones (``video_level`` in the JSON).
"""
import sys

from fakedetect.analysis.common import load_run_model, load_split
from fakedetect.analysis.numbers import analyse_scores, get_soft_scores_and_true_labels, video_ids
from fakedetect.cli.analysis_common import add_run_arguments, exits_on_error, parse_args
from fakedetect.cli.common import ArgumentParser


@exits_on_error
def main(argv=None):
    parser = ArgumentParser(description=__doc__)
    args = parse_args(add_run_arguments(parser), argv)
    model, checkpoint = load_run_model(args)
    dataset = load_split(args)
    real_scores, fake_scores, labels = get_soft_scores_and_true_labels(
        dataset, model, checkpoint["normalization"], args.batch_size, progress=True)
    analyse_scores(labels, real_scores, fake_scores, args, checkpoint, video_ids(dataset))
    return 0


if __name__ == "__main__":
    sys.exit(main())
