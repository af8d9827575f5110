"""Detectors built by name: the course's SimpleNet, the Xception-based model, any timm
architecture as ``timm:NAME`` (e.g. ``timm:resnet18``) with a 2-way head, a patch detector
``patch:NAME[@STRIDE]``: a timm CNN cut at output stride 8 (or STRIDE) that averages the
real/fake logits of its patches, and SeamNet (``SeamNet``, ``SeamNet-WxD``, ``seam:NAME``), made
for self-blended training from random weights on a CPU, with a head that can also predict the
manipulation mask."""
import argparse
import re

import torch
from torch import nn

from fileio import CheckpointError, load_weights_file, state_dict_mismatch
from hub_weights import create_pretrained
from runs import load_detector_checkpoint
from xception import XCEPTION_MEAN, XCEPTION_STD, build_xception_backbone

MODEL_NAMES = ("SimpleNet", "XceptionBased", "SeamNet")
TIMM_PREFIX = "timm:"
PATCH_PREFIX = "patch:"
SEAM_PREFIX = "seam:"
SEAMNET_SIZE = re.compile(r"SeamNet-(\d+)x(\d+)")  # SeamNet-WIDTHxDEPTH
SEAMNET_WIDTH, SEAMNET_DEPTH = 16, 2  # SeamNet: 0.22 GMAC at 256 px, about SimpleNet's 0.19
SEAMNET_STAGES = 4
BF16_FASTER = {"XceptionBased"}


class SimpleNet(nn.Module):
    """The course's small CNN for 3x256x256 input: 16,901,762 parameters, 2 logits (real, fake)."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 7)
        self.pool = nn.MaxPool2d(2, 2)
        self.conv2 = nn.Conv2d(6, 16, 7)
        self.conv3 = nn.Conv2d(16, 24, 7)
        self.fc1 = nn.Linear(24 * 26 * 26, 1024)
        self.fc2 = nn.Linear(1024, 256)
        self.fc3 = nn.Linear(256, 2)

    def forward(self, image):
        features = self.pool(torch.relu(self.conv1(image)))
        features = self.pool(torch.relu(self.conv2(features)))
        features = self.pool(torch.relu(self.conv3(features)))
        features = torch.flatten(features, 1)
        features = torch.relu(self.fc1(features))
        features = torch.relu(self.fc2(features))
        return self.fc3(features)


def conv_bn_relu(inputs, outputs, stride=1):
    """3x3 convolution (no bias: the batch norm has one), batch norm, ReLU."""
    return nn.Sequential(nn.Conv2d(inputs, outputs, 3, stride, 1, bias=False), nn.BatchNorm2d(outputs),
                         nn.ReLU(inplace=True))


class SeamHead(nn.Module):
    """The head of every SeamNet: global average and max pooling of the last feature map, side by side
    (max pooling keeps a seam that covers a small part of the face), a linear layer to 2 logits (real,
    fake), and ``mask``: a 1x1 convolution that predicts, for every cell of the feature map, the logit of
    it being manipulated (``SeamNet.forward(..., with_mask=True)``; trained by --mask-loss, unused otherwise)."""

    def __init__(self, channels):
        super().__init__()
        self.fc = nn.Linear(2 * channels, 2)
        self.mask = nn.Conv2d(channels, 1, 1)

    def forward(self, features):
        return self.fc(torch.cat([features.mean((2, 3)), features.amax((2, 3))], 1))


class SeamNet(nn.Module):
    """A detector made for self-blended training from random weights on a CPU: fully convolutional,
    batch norm after every convolution, no pooling before the head (each stage halves the resolution
    with a stride-2 convolution, which sees every pixel, so the thin blending boundary of a face swap
    reaches the deep features) and SeamHead on the last feature map.

    ``width`` channels in the first of ``stages`` stages, doubling in each; ``depth`` convolutions per
    stage. The default (16, 2, 4 stages) costs 0.22 GMAC a 256x256 image (SimpleNet: 0.19) with 0.29 M
    parameters, and its 16x16 feature map carries the mask. Takes any input size (global pooling).
    ``backbone``: a timm architecture used instead of the plain stages (``seam:ARCH``: its last feature
    map into the same head, e.g. ImageNet-pretrained EfficientNet-B4 on a GPU, the SBI paper's choice)."""

    def __init__(self, width=SEAMNET_WIDTH, depth=SEAMNET_DEPTH, stages=SEAMNET_STAGES, backbone=None,
                 pretrained=False, weights=None, drop_path_rate=0.0):
        super().__init__()
        if backbone is None:
            layers, channels = [], 3
            for stage in range(stages):
                outputs = width * 2 ** stage
                layers.append(conv_bn_relu(channels, outputs, stride=2))
                layers += [conv_bn_relu(outputs, outputs) for _ in range(depth - 1)]
                channels = outputs
            self.features = nn.Sequential(*layers)
        else:
            self.features = timm_stage(backbone, None, weights, drop_path_rate, pretrained, prefix=SEAM_PREFIX)
            self.pretrained_cfg = self.features.pretrained_cfg
            channels = self.features.feature_info.channels()[-1]
        self.head = SeamHead(channels)

    def feature_map(self, image):
        features = self.features(image)
        return features[-1] if isinstance(features, list) else features  # timm's feature extractors give a list

    def forward(self, image, with_mask=False):
        """Logits (B x 2); ``with_mask``: ``(logits, mask logits B x 1 x h x w)``, the second saying, cell by cell
        of the last feature map, whether it is manipulated (one forward, so DistributedDataParallel sees it)."""
        features = self.feature_map(image)
        return (self.head(features), self.head.mask(features)) if with_mask else self.head(features)


def parse_seamnet_name(name):
    """(width, depth) of ``SeamNet`` or ``SeamNet-WIDTHxDEPTH``; None when ``name`` is neither."""
    if name == "SeamNet":
        return SEAMNET_WIDTH, SEAMNET_DEPTH
    match = SEAMNET_SIZE.fullmatch(name)
    return (int(match[1]), int(match[2])) if match else None


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


def model_name(value):
    """argparse type of ``-m``: a name of MODEL_NAMES, ``SeamNet-WxD``, ``timm:ARCH``, ``patch:ARCH[@STRIDE]`` or
    ``seam:ARCH``."""
    error = model_name_error(value)
    if error:
        raise argparse.ArgumentTypeError(f"invalid choice: {value!r}; {error}")
    return value


class ModelNameError(ValueError):
    """A model name that parses but names no buildable detector (e.g. a patch stride ARCH lacks)."""


def create_timm(arch, drop_path_rate=0.0, **kwargs):
    """``timm.create_model(arch, **kwargs)``, with stochastic depth ``drop_path_rate`` when > 0
    (ModelNameError when ``arch`` has none); ``pretrained=True`` downloads the weights once
    through the hub (hub_weights.create_pretrained: WeightsUnavailableError when they cannot be had)."""
    import timm
    if drop_path_rate > 0:
        kwargs["drop_path_rate"] = drop_path_rate
    try:
        if kwargs.get("pretrained") and "pretrained_cfg_overlay" not in kwargs:  # not a local state dict
            kwargs.pop("pretrained")
            return create_pretrained(arch, without=f"drop --pretrained to train {arch} from random weights", **kwargs)
        return timm.create_model(arch, **kwargs)
    except TypeError as error:
        if "drop_path_rate" not in str(error):
            raise
        raise ModelNameError(f"--drop-path {drop_path_rate}: timm's {arch} has no stochastic depth; drop the "
                             f"flag or choose an architecture with it (e.g. resnet18, efficientnet_b0)") from None


def build_timm_model(arch, weights=None, drop_path_rate=0.0, pretrained=False):
    """timm's ``arch`` with a 2-way head: random weights, ``weights`` (a state dict file of that
    architecture, e.g. ``timm.create_model(arch, pretrained=True).state_dict()``, or .safetensors;
    its classifier, of another size, is replaced), or with ``pretrained`` timm's own pretrained
    weights (downloaded once through the hub); and stochastic depth ``drop_path_rate``."""
    model = create_timm(arch, drop_path_rate, pretrained=pretrained and weights is None, num_classes=2)
    if weights is not None:
        heads = model.pretrained_cfg.get("classifier", "fc")  # a name, or a tuple (e.g. DeiT's head, head_dist)
        prefixes = tuple(f"{head}." for head in ((heads,) if isinstance(heads, str) else heads))
        load_timm_weights(model, arch, weights, replaced=lambda key: key.startswith(prefixes))
    return model


def timm_stage(arch, stride, weights=None, drop_path_rate=0.0, pretrained=False, prefix=SEAM_PREFIX):
    """timm's ``arch`` as a feature extractor cut after its first stage of output stride ``stride`` (None: its
    last stage), with timm's pretrained weights (``pretrained``, through the hub) or a local state dict file of
    the whole network (``weights``). ModelNameError naming ``prefix`` + ``arch`` when it cannot be cut so."""
    import timm
    try:
        reductions = timm.create_model(arch, pretrained=False, features_only=True).feature_info.reduction()
    except RuntimeError as error:
        raise ModelNameError(f"-m {prefix}{arch}: timm cannot cut {arch} into stages ({error}); "
                             f"choose a CNN such as resnet18") from None
    if stride is not None and stride not in reductions:
        raise ModelNameError(f"-m {prefix}{arch}@{stride}: {arch} has no stage of output stride {stride}; "
                             f"choose @STRIDE with STRIDE one of {sorted(set(reductions))}")
    stage = reductions.index(stride) if stride is not None else len(reductions) - 1
    loaded = dict(pretrained=pretrained)  # timm's own weights, through the hub
    if weights is not None:  # checked on the whole network; the cut one often renames its layers (stem.0 -> stem_0)
        full = build_timm_model(arch, weights)
        loaded = dict(pretrained=True, pretrained_cfg_overlay=dict(state_dict=full.state_dict()))
    features = create_timm(arch, drop_path_rate, features_only=True, out_indices=(stage,), **loaded)
    features.pretrained_cfg.pop("state_dict", None)
    return features


class PatchDetector(nn.Module):
    """A timm CNN cut after its first stage of output stride ``stride`` (8: ``layer2`` of a ResNet),
    a 1x1 convolution that scores every patch of its receptive field as real or fake, and the mean
    of those patch logits as the image's 2 logits (Chai et al., 2020, "What makes fake images
    detectable?"). Local artifacts count wherever they are; the image-level layout cannot be learnt.
    """

    def __init__(self, arch, stride=8, weights=None, drop_path_rate=0.0, pretrained=False):
        super().__init__()
        self.features = timm_stage(arch, stride, weights, drop_path_rate, pretrained, prefix=PATCH_PREFIX)
        self.pretrained_cfg = self.features.pretrained_cfg
        self.patch_logits = nn.Conv2d(self.features.feature_info.channels()[-1], 2, 1)

    def forward(self, image):
        return self.patch_logits(self.features(image)[-1]).mean((2, 3))


def parse_patch_name(name):
    """(arch, stride) of ``patch:ARCH`` (stride 8) or ``patch:ARCH@STRIDE``; stride None if not a number."""
    arch, at, stride = name[len(PATCH_PREFIX):].partition("@")
    if not at:
        return arch, 8
    return arch, int(stride) if stride.isdigit() else None


def load_timm_weights(model, arch, weights, replaced):
    """Load the state dict file ``weights`` of timm ``arch`` (bare, or under a ``state_dict`` or
    ``model`` key) into ``model`` in place. Keys for which ``replaced(key)`` is true and whose
    shape differs (a classifier of another size) are left as they are. Raises CheckpointError
    naming the file when it is not such a state dict."""
    fix = (f"pass weights saved with torch.save(timm.create_model('{arch}').state_dict(), FILE) "
           "or a .safetensors file of them")
    state = load_weights_file(weights, fix, wrappers=("state_dict", "model"))
    own = model.state_dict()
    state = {key: value for key, value in state.items()
             if not (replaced(key) and key in own and value.shape != own[key].shape)}
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as error:  # a tensor of another shape
        raise CheckpointError(f"{weights}: not a state dict of timm {arch} ({state_dict_mismatch(error)}); {fix}") from None
    missing = [key for key in missing if not replaced(key)]
    if missing or unexpected:
        raise CheckpointError(f"{weights}: not a state dict of timm {arch} ({len(missing)} missing keys, e.g. "
                              f"{missing[:2]}; {len(unexpected)} unexpected, e.g. {unexpected[:2]}); {fix}")


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


def resolve_device(device, parser):
    """The ``--device`` value checked, or the default (cuda when available, else cpu); when torch
    does not know it or it is absent, ``parser.error`` with the fix (exit code 2)."""
    if device is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        kind = torch.device(device).type
    except (RuntimeError, ValueError):
        parser.error(f"--device {device}: not a device; use cpu, cuda or cuda:N")
    if kind == "cuda" and not torch.cuda.is_available():
        parser.error(f"--device {device}: CUDA is not available on this machine; use --device cpu")
    index = torch.device(device).index
    if kind == "cuda" and index is not None and index >= torch.cuda.device_count():
        parser.error(f"--device {device}: this machine has {torch.cuda.device_count()} CUDA device(s); "
                     f"use cuda:0 to cuda:{torch.cuda.device_count() - 1}")
    return device


def precision_settings(model_name, device, amp="auto"):
    """(autocast dtype or None, channels_last) for training ``model_name`` on ``device``.

    bf16 autocast and channels_last only on CUDA: ``auto`` turns them on for XceptionBased,
    where they measured faster, and for timm and patch models (deep CNNs like it), and off for
    SimpleNet, where fp32 measured faster, and on GPUs without native bf16 (compute capability
    below 8, before Ampere, where it is emulated and slow); ``bf16`` forces them on, ``off`` off.
    On the CPU autocast is always off (bf16 is slow there), and channels_last is on for the
    SeamNet family only (unless ``off``), where it measured 1.8x faster to train.
    """
    if amp == "off":
        return None, False
    if torch.device(device).type != "cuda":
        return None, parse_seamnet_name(model_name) is not None or model_name.startswith(SEAM_PREFIX)
    if amp == "bf16":
        return torch.bfloat16, True
    faster = model_name in BF16_FASTER or model_name.startswith((TIMM_PREFIX, PATCH_PREFIX, SEAM_PREFIX))
    if faster and torch.cuda.get_device_capability(device)[0] >= 8:  # native bf16 from Ampere on
        return torch.bfloat16, True
    return None, False


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
