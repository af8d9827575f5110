"""The input normalization a run trains with: the ``--normalization`` knob resolved against the model and
the training split (it needs both, so it sits above data and models)."""
from fakedetect.config.recipe import NORMALIZATIONS
from fakedetect.data.normalization import CIFAR10_NORMALIZATION, SYMMETRIC_NORMALIZATION, channel_statistics
from fakedetect.models.registry import model_normalization


def resolve_normalization(choice, model_name, model, pretrained, train_dataset):
    """(mean, std) of the input normalization ``choice`` names.

    ``dataset``: per-channel statistics of the training split; ``symmetric``: [-1, 1];
    ``model``: the backbone's own (Xception's, or the timm architecture's pretrained_cfg);
    ``cifar10``: the course's constants; ``auto``: ``model`` when pretrained weights are
    loaded, else ``dataset``.
    """
    if choice == "auto":
        choice = "model" if pretrained else "dataset"
    if choice == "dataset":
        return channel_statistics(train_dataset)
    if choice == "symmetric":
        return SYMMETRIC_NORMALIZATION
    if choice == "cifar10":
        return CIFAR10_NORMALIZATION
    if choice == "model":
        return model_normalization(model_name, model)
    raise ValueError(f"unknown normalization {choice!r}; choose one of {', '.join(NORMALIZATIONS)}")
