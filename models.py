"""Detectors: the course's SimpleNet and the Xception-based model, built by name."""
import torch
from torch import nn

from fileio import CheckpointError, load_checkpoint
from xception import XCEPTION_MEAN, XCEPTION_STD, build_xception_backbone

MODEL_NAMES = ("SimpleNet", "XceptionBased")
BF16_FASTER = {"XceptionBased"}
# SimpleNet is trained from scratch on [-1, 1] inputs; Xception uses its own ImageNet statistics (also [-1, 1]).
NORMALIZATION = {"SimpleNet": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
                 "XceptionBased": (XCEPTION_MEAN, XCEPTION_STD)}


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


def build_model(name, pretrained=True, weights=None):
    """The detector called ``name`` (one of MODEL_NAMES); only that model is built."""
    if name == "SimpleNet":
        return SimpleNet()
    if name == "XceptionBased":
        return get_xception_based_model(pretrained=pretrained, weights=weights)
    raise ValueError(f"unknown model {name!r}; choose one of {', '.join(MODEL_NAMES)}")


def precision_settings(model_name, device, amp="auto"):
    """(autocast dtype or None, channels_last) for training ``model_name`` on ``device``.

    bf16 autocast and channels_last only on CUDA: ``auto`` turns them on for XceptionBased,
    where they measured faster, and off for SimpleNet, where fp32 measured faster;
    ``bf16`` forces them on, ``off`` off. On the CPU they are always off (bf16 is slow there).
    """
    if torch.device(device).type != "cuda" or amp == "off":
        return None, False
    if amp == "bf16" or model_name in BF16_FASTER:
        return torch.bfloat16, True
    return None, False


def load_trained_model(checkpoint_path, device="cpu"):
    """A detector restored from a checkpoint written by train_main.py, in eval mode.

    Returns ``(model, checkpoint)``; ``checkpoint["normalization"]`` is the (mean, std) its
    inputs need and ``checkpoint["threshold"]`` its operating threshold on the fake probability.
    Raises CheckpointError naming the file when it is not such a checkpoint.
    """
    checkpoint = load_checkpoint(checkpoint_path, required_keys=("model", "model_name"))
    name = checkpoint["model_name"]
    if name not in MODEL_NAMES:
        raise CheckpointError(f"{checkpoint_path}: unknown model {name!r}; expected one of {', '.join(MODEL_NAMES)}")
    model = build_model(name, pretrained=False)
    try:
        model.load_state_dict(checkpoint["model"])
    except RuntimeError as error:
        raise CheckpointError(f"{checkpoint_path}: weights do not fit {name} "
                              f"({str(error).splitlines()[0][:160]})") from None
    return model.to(device).eval(), checkpoint
