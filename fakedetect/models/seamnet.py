"""SeamNet (``SeamNet``, ``SeamNet-WxD``, ``seam:ARCH``): a detector made for self-blended training from
random weights on a CPU, whose head can also predict the manipulation mask."""
import re

import torch
from torch import nn

from fakedetect.models.timm_models import SEAM_PREFIX, timm_stage

SEAMNET_SIZE = re.compile(r"SeamNet-(\d+)x(\d+)")  # SeamNet-WIDTHxDEPTH
SEAMNET_WIDTH, SEAMNET_DEPTH = 16, 2  # SeamNet: 0.22 GMAC at 256 px, about SimpleNet's 0.19
SEAMNET_STAGES = 4


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
