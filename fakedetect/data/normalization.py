"""Input normalization: the constant (mean, std) pairs of the recipes, a split's own channel statistics, and
the bulk uint8 -> normalized float conversion of both data paths (``Normalizer``) and back (``denormalize``).
"""
import numpy as np
import torch

from fakedetect.data.cache import DecodedFaces
from fakedetect.data.images import decode_pixels

CIFAR10_NORMALIZATION = ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))
SYMMETRIC_NORMALIZATION = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))


def channel_statistics(dataset, max_images=1000):
    """Per-channel (mean, std) in [0, 1] units over up to ``max_images`` evenly spaced images of a
    split (DecodedFaces or FacesDataset: the same files give the same numbers), rounded to 4 places."""
    indices = torch.linspace(0, len(dataset) - 1, min(len(dataset), max_images)).round().long().unique()
    sums = torch.zeros(3, dtype=torch.float64)
    squares = torch.zeros(3, dtype=torch.float64)
    pixels = 0
    for chunk in indices.split(32):
        if isinstance(dataset, DecodedFaces):
            batch = dataset.images[chunk.to(dataset.images.device)].cpu()
        else:
            arrays = [array for array, _ in map(decode_pixels, [dataset.files[i] for i in chunk]) if array is not None]
            batch = torch.from_numpy(np.stack(arrays))
        batch = batch.double() / 255
        sums += batch.sum((0, 2, 3))
        squares += (batch * batch).sum((0, 2, 3))
        pixels += batch[:, 0].numel()
    mean = sums / pixels
    std = (squares / pixels - mean * mean).clamp_min(1e-12).sqrt()
    return tuple(round(v, 4) for v in mean.tolist()), tuple(round(v, 4) for v in std.tolist())


class Normalizer:
    """uint8 batch -> float batch normalized with per-channel ``mean``/``std`` (given in [0, 1] units)."""

    def __init__(self, mean, std, device, channels_last=False):
        self.scale = (1.0 / (255.0 * torch.tensor(std, device=device))).view(1, -1, 1, 1)
        self.shift = (-torch.tensor(mean, device=device) / torch.tensor(std, device=device)).view(1, -1, 1, 1)
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format

    def __call__(self, images):
        images = images.float() * self.scale + self.shift
        return images.contiguous(memory_format=self.memory_format)


def denormalize(images, normalization):
    """Normalized B x 3 x H x W images back to B x H x W x 3 uint8 pixels."""
    mean, std = (torch.tensor(v, device=images.device).view(1, -1, 1, 1) for v in normalization)
    pixels = (images * std + mean).clamp(0, 1) * 255
    return pixels.round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
