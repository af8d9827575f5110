"""Grad-CAM (Selvaraju et al., 2017) of a trained detector, with the ``grad-cam`` package.

    python grad_cam_analysis.py -m SimpleNet -d demo_fakes -o AdamW [--explain predicted|true|fake|real]

Writes ``figures/{dataset}_{model}_{optimizer}_Real_Image_grad_cam.png`` and ``..._Fake_Image_grad_cam.png``
(one test image of each class, drawn with ``--seed``), ``..._grad_cam_grid.png`` (six images
per class) and ``..._mean_grad_cam.png`` (mean map of the true class per class), and prints
how well the maps of fakes hit their ground-truth masks when the split has them.
``pytorch_grad_cam`` is imported only when a map is computed, so this module imports without it.
"""
import importlib.util
import sys

from fakedetect.analysis.common import AnalysisError, load_run_model, load_split
from fakedetect.analysis.grad_cam_figures import grad_cam_analysis
from fakedetect.cli.analysis_common import add_run_arguments, exits_on_error, parse_args
from fakedetect.cli.common import ArgumentParser
from fakedetect.explain.grad_cam import EXPLAIN_CHOICES
from fakedetect.explain.scores import format_scores_table, summarize_scores


@exits_on_error
def main(argv=None):
    parser = ArgumentParser(description=__doc__)
    add_run_arguments(parser).add_argument("--explain", default="predicted", choices=EXPLAIN_CHOICES,
                                           help="class whose evidence the figures show (default: predicted)")
    args = parse_args(parser, argv)
    if importlib.util.find_spec("pytorch_grad_cam") is None:
        raise AnalysisError("grad_cam_analysis.py needs the grad-cam package: pip install 'grad-cam>=1.5,<2'")
    model, checkpoint = load_run_model(args)
    _, result = grad_cam_analysis(model, checkpoint["normalization"], load_split(args), args, args.explain)
    if result["scores"]["map"]:
        print("\nGrad-CAM maps of fakes (true class) against their manipulation masks:")
        print(format_scores_table(summarize_scores(result["scores"], "Grad-CAM")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
