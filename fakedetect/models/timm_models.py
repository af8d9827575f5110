"""Detectors made of timm architectures: ``timm:ARCH`` (the architecture with a 2-way head), ``patch:ARCH[@STRIDE]``
(a timm CNN cut at output stride 8, or STRIDE, averaging the real/fake logits of its patches) and the cut
backbones ``seam:ARCH`` puts under SeamNet's head; with timm's pretrained weights through the hub or a local
state dict file. ``timm`` is imported only when such a model is built."""
from torch import nn

from fakedetect.io.files import CheckpointError, load_weights_file, state_dict_mismatch
from fakedetect.models.hub_weights import create_pretrained

TIMM_PREFIX = "timm:"
PATCH_PREFIX = "patch:"
SEAM_PREFIX = "seam:"


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
