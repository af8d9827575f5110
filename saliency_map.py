"""Gradient saliency maps of a run: ``python saliency_map.py -m SimpleNet -d demo_fakes`` (fakedetect.cli.saliency_map)."""
import sys

from fakedetect.analysis.saliency_figures import saliency_analysis
from fakedetect.cli.saliency_map import main
from fakedetect.explain.saliency import compute_gradient_saliency_maps, saliency_explainer

__all__ = ["compute_gradient_saliency_maps", "main", "saliency_analysis", "saliency_explainer"]

if __name__ == "__main__":
    sys.exit(main())
