"""The detectors, built and loaded by name through the registry; the registry's public names are
re-exported here (``from fakedetect.models import build_model, load_trained_model``)."""
from fakedetect.models.registry import (MODEL_NAMES, build_model, has_global_pooling, has_mask_head,
                                        has_pretrained_weights, load_trained_model, model_device, model_name_error,
                                        model_normalization)
from fakedetect.models.simplenet import SimpleNet
from fakedetect.models.timm_models import PATCH_PREFIX, SEAM_PREFIX, TIMM_PREFIX, ModelNameError
from fakedetect.models.xception import get_xception_based_model

__all__ = ["MODEL_NAMES", "PATCH_PREFIX", "SEAM_PREFIX", "TIMM_PREFIX", "ModelNameError", "SimpleNet", "build_model",
           "get_xception_based_model", "has_global_pooling", "has_mask_head", "has_pretrained_weights",
           "load_trained_model", "model_device", "model_name_error", "model_normalization"]
