"""Detectors built by name: the course's SimpleNet, the Xception-based model, any timm
architecture as ``timm:NAME`` (e.g. ``timm:resnet18``) with a 2-way head, a patch detector
``patch:NAME[@STRIDE]``: a timm CNN cut at output stride 8 (or STRIDE) that averages the
real/fake logits of its patches, and SeamNet (``SeamNet``, ``SeamNet-WxD``, ``seam:NAME``), made
for self-blended training from random weights on a CPU, with a head that can also predict the
manipulation mask. Every command builds and loads its detectors here (``build_model``,
``load_trained_model``); the families live in their own modules beside this one."""
from fakedetect.io.files import CheckpointError, state_dict_mismatch
from fakedetect.io.runs import load_detector_checkpoint
from fakedetect.models.seamnet import SeamNet, parse_seamnet_name
from fakedetect.models.simplenet import SimpleNet
from fakedetect.models.timm_models import (PATCH_PREFIX, SEAM_PREFIX, TIMM_PREFIX, PatchDetector, build_timm_model,
                                           parse_patch_name)
from fakedetect.models.xception import XCEPTION_MEAN, XCEPTION_STD, get_xception_based_model

MODEL_NAMES = ("SimpleNet", "XceptionBased", "SeamNet")


def model_name_error(name):
    """Why ``name`` names no detector, as the fix to make (one line), or None when it names one."""
    if name in MODEL_NAMES:
        return None
    if name.startswith("SeamNet-"):
        size = parse_seamnet_name(name)
        if size is None or not (1 <= size[0] <= 512 and 1 <= size[1] <= 16):
            return "write SeamNet-WIDTHxDEPTH with a width of 1 to 512 and a depth of 1 to 16 (e.g. SeamNet-24x3)"
        return None
    if name.startswith((TIMM_PREFIX, PATCH_PREFIX, SEAM_PREFIX)):
        import timm
        arch, stride = parse_patch_name(name) if name.startswith(PATCH_PREFIX) else (name.partition(":")[2], None)
        if not timm.is_model(arch):
            return "not a timm architecture; list them with python -c 'import timm; print(timm.list_models())'"
        if name.startswith(PATCH_PREFIX) and stride not in (2, 4, 8, 16, 32):
            return f"the output stride after @ must be 2, 4, 8, 16 or 32 (e.g. {PATCH_PREFIX}{arch}@16)"
        return None
    return (f"choose {', '.join(MODEL_NAMES)}, SeamNet-WIDTHxDEPTH, {TIMM_PREFIX}ARCH for a timm architecture (e.g. "
            f"{TIMM_PREFIX}resnet18), {PATCH_PREFIX}ARCH for its patch detector or {SEAM_PREFIX}ARCH for it under "
            "SeamNet's head")


def model_normalization(name, model):
    """(mean, std) the detector's pretrained backbone expects (raises ValueError for SimpleNet)."""
    if name == "XceptionBased":
        return XCEPTION_MEAN, XCEPTION_STD
    if name.startswith((TIMM_PREFIX, PATCH_PREFIX, SEAM_PREFIX)):
        return tuple(model.pretrained_cfg["mean"]), tuple(model.pretrained_cfg["std"])
    raise ValueError(f"{name} has no pretrained backbone statistics; use --normalization dataset or symmetric")


def has_pretrained_weights(name):
    """Whether the detector ``name`` has a pretrained backbone to start from (and its own normalization)."""
    return name == "XceptionBased" or name.startswith((TIMM_PREFIX, PATCH_PREFIX, SEAM_PREFIX))


def has_mask_head(name):
    """Whether the detector ``name`` predicts a manipulation mask (``forward(..., with_mask=True)``; --mask-loss
    trains it)."""
    return parse_seamnet_name(name) is not None or name.startswith(SEAM_PREFIX)


def has_global_pooling(name):
    """Whether the detector takes inputs of any size (SimpleNet takes 256x256 only)."""
    return name != "SimpleNet"


def build_model(name, pretrained=None, weights=None, drop_path_rate=0.0):
    """The detector called ``name`` (MODEL_NAMES, ``SeamNet-WxD``, ``timm:ARCH``, ``patch:ARCH[@STRIDE]`` or
    ``seam:ARCH``); only
    that model is built, with stochastic depth ``drop_path_rate``. Its starting weights: ``weights``
    (a local state dict file of ARCH, or of Xception), else pretrained ones downloaded once
    through the hub when ``pretrained`` (None: XceptionBased pretrained, timm and patch models
    random), else random."""
    if name.startswith(TIMM_PREFIX):
        return build_timm_model(name[len(TIMM_PREFIX):], weights, drop_path_rate, pretrained=bool(pretrained))
    if name.startswith(PATCH_PREFIX):
        arch, stride = parse_patch_name(name)
        return PatchDetector(arch, stride, weights, drop_path_rate, pretrained=bool(pretrained))
    if name.startswith(SEAM_PREFIX):
        return SeamNet(backbone=name[len(SEAM_PREFIX):], weights=weights, drop_path_rate=drop_path_rate,
                       pretrained=bool(pretrained))
    if parse_seamnet_name(name) is not None:
        width, depth = parse_seamnet_name(name)
        return SeamNet(width, depth)
    if name == "SimpleNet":
        return SimpleNet()
    if name == "XceptionBased":
        return get_xception_based_model(pretrained=pretrained is not False, weights=weights)
    raise ValueError(f"unknown model {name!r}; {model_name_error(name)}")


def load_trained_model(checkpoint_path, device="cpu"):
    """A detector restored from a checkpoint written by train_main.py, in eval mode.

    Returns ``(model, checkpoint)``; ``checkpoint["normalization"]`` is the (mean, std) its
    inputs need and ``checkpoint["threshold"]`` its operating threshold on the fake probability
    (the validation EER point; None when the validation split held one class).
    Raises CheckpointError naming the file when it is not such a checkpoint.
    """
    checkpoint = load_detector_checkpoint(checkpoint_path)
    name = checkpoint["model_name"]
    if model_name_error(name):
        raise CheckpointError(f"{checkpoint_path}: unknown model {name!r}; {model_name_error(name)}")
    model = build_model(name, pretrained=False)
    try:
        model.load_state_dict(checkpoint["model"])
    except RuntimeError as error:
        raise CheckpointError(f"{checkpoint_path}: weights do not fit {name} ({state_dict_mismatch(error)})") from None
    return model.to(device).eval(), checkpoint


def model_device(model):
    """The device of ``model``'s parameters."""
    return next(model.parameters()).device
