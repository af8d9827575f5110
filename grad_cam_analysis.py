"""Grad-CAM of a run: ``python grad_cam_analysis.py -m SimpleNet -d demo_fakes`` (fakedetect.cli.grad_cam_analysis)."""
import sys

from fakedetect.analysis.grad_cam_figures import grad_cam_analysis
from fakedetect.cli.grad_cam_analysis import main
from fakedetect.explain.grad_cam import (EXPLAIN_CHOICES, explain_pixels, get_grad_cam_visualization, grad_cam_maps,
                                         overlay, target_layer_name)

__all__ = ["EXPLAIN_CHOICES", "explain_pixels", "get_grad_cam_visualization", "grad_cam_analysis", "grad_cam_maps",
           "main", "overlay", "target_layer_name"]

if __name__ == "__main__":
    sys.exit(main())
