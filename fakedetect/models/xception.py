"""The Xception backbone (timm's ``legacy_xception``, 22,855,952 parameters with its 1000-class fc) and the
course's Xception-based detector built on it."""
from pathlib import Path

from torch import nn

from fakedetect.io.files import CheckpointError, load_weights_file, state_dict_mismatch
from fakedetect.models.hub_weights import create_pretrained

XCEPTION_MEAN = (0.5, 0.5, 0.5)
XCEPTION_STD = (0.5, 0.5, 0.5)


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
    fix = "pass ImageNet Xception weights (a state dict saved with torch.save, or .safetensors) to --weights"
    state_dict = load_weights_file(path, fix)
    try:
        model.load_state_dict(_to_timm_layout(state_dict))
    except RuntimeError as error:
        raise CheckpointError(f"{path}: not Xception ImageNet weights in timm or Cadene layout "
                              f"({state_dict_mismatch(error)}); {fix}") from None
    return model


def build_xception_backbone(pretrained=False, weights=None):
    """timm's legacy_xception with its 1000-class ``fc``.

    ``weights``: a local state dict file (timm or Cadene layout, or .safetensors), loaded
    whatever ``pretrained`` says. ``pretrained`` without ``weights``: timm's ImageNet weights,
    downloaded once into torch hub's cache (``~/.cache/torch/hub/checkpoints/xception-43020ad28.pth``)
    and read from it after (hub_weights.create_pretrained); when they cannot be had this raises
    WeightsUnavailableError naming ``--weights FILE`` and ``--no-pretrained`` rather than
    falling back to random weights.
    """
    import timm

    if weights is None and pretrained:
        return create_pretrained("legacy_xception", without="train from random weights with --no-pretrained")
    model = timm.create_model("legacy_xception", pretrained=False)
    return model if weights is None else load_xception_weights(model, weights)


def get_xception_based_model(pretrained=True, weights=None):
    """Xception backbone with its ``fc`` replaced by 2048-1000-256-64-2 (ReLU between); nothing frozen.

    23,128,786 trainable parameters. See ``build_xception_backbone`` for ``pretrained``/``weights``.
    """
    model = build_xception_backbone(pretrained=pretrained, weights=weights)
    model.fc = nn.Sequential(nn.Linear(2048, 1000), nn.ReLU(),
                             nn.Linear(1000, 256), nn.ReLU(),
                             nn.Linear(256, 64), nn.ReLU(),
                             nn.Linear(64, 2))
    return model
