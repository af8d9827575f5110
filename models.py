"""The course's models module, kept as a name: the detectors of fakedetect.models."""
from fakedetect.cli.common import model_name, resolve_device
from fakedetect.models import (MODEL_NAMES, PATCH_PREFIX, SEAM_PREFIX, TIMM_PREFIX, ModelNameError, SimpleNet,
                               build_model, get_xception_based_model, has_global_pooling, has_mask_head,
                               load_trained_model, model_name_error, model_normalization)
from fakedetect.models.precision import precision_settings

__all__ = ["build_model", "get_xception_based_model", "has_global_pooling", "has_mask_head", "load_trained_model",
           "model_name", "model_name_error", "MODEL_NAMES", "model_normalization", "ModelNameError", "PATCH_PREFIX",
           "precision_settings", "resolve_device", "SEAM_PREFIX", "SimpleNet", "TIMM_PREFIX"]
