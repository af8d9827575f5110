"""The Xception backbone (timm's ``legacy_xception``, 22,855,952 parameters with its 1000-class fc)."""
from pathlib import Path

import torch

from fileio import CheckpointError, load_weights_file, state_dict_mismatch

XCEPTION_MEAN = (0.5, 0.5, 0.5)
XCEPTION_STD = (0.5, 0.5, 0.5)
IMAGENET_WEIGHTS_NAME = "xception-43020ad28.pth"  # the file name of timm's legacy_xception weights


class WeightsUnavailableError(RuntimeError):
    """Pretrained weights were asked for but cannot be had offline."""


def _to_timm_layout(state_dict):
    """Rename the original (Cadene / FaceForensics) keys to timm's: ``last_linear`` -> ``fc``,
    an optional ``model.`` or ``module.`` prefix dropped, 2-D pointwise kernels made 4-D."""
    converted = {}
    for key, value in state_dict.items():
        for prefix in ("module.", "model."):
            if key.startswith(prefix):
                key = key[len(prefix):]
        key = key.replace("last_linear.", "fc.")
        if "pointwise" in key and key.endswith("weight") and value.dim() == 2:
            value = value[:, :, None, None]
        converted[key] = value
    return converted


def load_xception_weights(model, weights):
    """Load a local ImageNet Xception state dict (timm or Cadene key layout) into ``model``."""
    path = Path(weights)
    fix = "pass ImageNet Xception weights (a state dict saved with torch.save) to --weights"
    state_dict = load_weights_file(path, fix)
    try:
        model.load_state_dict(_to_timm_layout(state_dict))
    except RuntimeError as error:
        raise CheckpointError(f"{path}: not Xception ImageNet weights in timm or Cadene layout "
                              f"({state_dict_mismatch(error)}); {fix}") from None
    return model


def cached_imagenet_weights():
    """Where timm keeps the ImageNet ``legacy_xception`` weights it downloads (torch hub's cache)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / IMAGENET_WEIGHTS_NAME


def build_xception_backbone(pretrained=False, weights=None):
    """timm's legacy_xception with its 1000-class ``fc``.

    ``weights``: a local state dict file (timm or Cadene layout), loaded whatever
    ``pretrained`` says. ``pretrained`` without ``weights``: the ImageNet weights from torch
    hub's cache (``cached_imagenet_weights()``), never downloaded; when they are not there this
    raises WeightsUnavailableError naming ``--weights FILE`` and ``--no-pretrained`` rather
    than falling back to random weights.
    """
    import timm

    if weights is None and pretrained:
        weights = cached_imagenet_weights()
        if not weights.is_file():
            raise WeightsUnavailableError(
                f"ImageNet Xception weights are not in {weights} and are never downloaded at run time; "
                "pass a local file with --weights FILE (timm 'legacy_xception' or Cadene 'xception' "
                f"state dict, e.g. {IMAGENET_WEIGHTS_NAME}) or train from random weights with --no-pretrained")
    model = timm.create_model("legacy_xception", pretrained=False)
    return model if weights is None else load_xception_weights(model, weights)
