"""The Xception backbone (timm's ``legacy_xception``, 22,855,952 parameters with its 1000-class fc)."""
from pathlib import Path

import torch

from fileio import CheckpointError

XCEPTION_MEAN = (0.5, 0.5, 0.5)
XCEPTION_STD = (0.5, 0.5, 0.5)


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
    try:
        state_dict = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: weights file not found; pass an existing file to --weights") from None
    except Exception as error:
        raise CheckpointError(f"{path}: not a loadable weights file ({str(error).splitlines()[0][:200]})") from None
    if isinstance(state_dict, dict) and isinstance(state_dict.get("state_dict"), dict):
        state_dict = state_dict["state_dict"]
    if not isinstance(state_dict, dict):
        raise CheckpointError(f"{path}: expected a state dict of Xception weights")
    try:
        model.load_state_dict(_to_timm_layout(state_dict))
    except RuntimeError as error:
        raise CheckpointError(f"{path}: not Xception ImageNet weights in timm or Cadene layout "
                              f"({str(error).splitlines()[0][:200]})") from None
    return model


def build_xception_backbone(pretrained=False, weights=None):
    """timm's legacy_xception with its 1000-class ``fc``.

    ``weights``: a local state dict file (timm or Cadene layout), loaded whatever
    ``pretrained`` says. ``pretrained`` without ``weights``: timm's ImageNet weights from
    its cache or the internet; when they cannot be had this raises WeightsUnavailableError naming
    ``--weights FILE`` and ``--no-pretrained`` rather than falling back to random weights.
    """
    import timm

    if weights is not None:
        return load_xception_weights(timm.create_model("legacy_xception", pretrained=False), weights)
    if not pretrained:
        return timm.create_model("legacy_xception", pretrained=False)
    try:
        return timm.create_model("legacy_xception", pretrained=True)
    except Exception as error:
        raise WeightsUnavailableError(
            "could not get ImageNet Xception weights offline "
            f"({type(error).__name__}: {str(error).splitlines()[0][:120]}); pass a local file with "
            "--weights FILE (timm 'legacy_xception' or Cadene 'xception' state dict) or train from "
            "random weights with --no-pretrained") from None
