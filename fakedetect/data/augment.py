"""Training augmentations, shared by both data paths.

Every augmentation is a batched op on uint8 images (B x 3 x H x W) with per-image
parameters drawn up front. The decoded-cache path (``batches.CachedBatches``) draws
the parameters of a whole epoch at once and applies the ops to each batch on the training
device; the per-item path (``batches.ItemBatches``) applies the same ops to a batch
of one image (``ItemAugment``), so both paths draw from the same distribution.

In order: crop + horizontal flip, colour jitter, Gaussian blur, JPEG re-compression, random erasing.

* ``crop="pad"``: the course's RandomCrop(256, padding=4), zero padding.
* ``crop="native"``: a random ``crop_size`` window at native resolution (no resizing, which
  would destroy generator traces); evaluation sees the whole image, as in CNNDetection
  (Wang et al., 2020). Needs a model with global pooling.
* ``crop="resized"``: torchvision's RandomResizedCrop(256): a window of ``crop_scale`` to all
  of the image's area, aspect ratio log-uniform in [3/4, 4/3], resized (bilinear) to 256x256.
  A scale augmentation for detectors that look at faces rather than pixel-level traces.
* colour jitter ``jitter=s``: brightness, contrast and saturation factors each uniform in
  [1 - s, 1 + s], applied in that order (torchvision's ColorJitter ops, fixed order, no hue).
* blur with probability ``blur_prob``: Gaussian, sigma uniform in [0, 3] (CNNDetection).
* JPEG with probability ``jpeg_prob``: re-encoded at a quality uniform in {30..100}
  (CNNDetection), with PIL (libjpeg, 4:2:0 chroma) on the CPU, one image at a time: only the
  chosen images leave the device (measured 1.6-1.9 ms per 256x256 image on one core of this
  machine, i.e. about 0.3 s per 1,540-image epoch at probability 0.1).
* random erasing with probability ``erase_prob`` (Zhong et al., 2020): one rectangle of 2% to
  1/3 of the image, aspect ratio log-uniform in [0.3, 3.3], filled with one random colour.

``mixup_batch`` (Zhang et al., 2018) mixes normalized batches in the trainer (``--mixup``).
"""
import dataclasses
import io
import math
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from fakedetect.config.recipe import CROP_MODES, IMAGE_SIZE

CROP_PADDING = 4
CROP_ASPECT = (3 / 4, 4 / 3)
CROP_ATTEMPTS = 10
BLUR_SIGMA = (0.0, 3.0)
JPEG_QUALITY = (30, 100)
ERASE_AREA = (0.02, 1 / 3)
ERASE_ASPECT = (0.3, 3.3)
GRAY_WEIGHTS = (0.299, 0.587, 0.114)


@dataclass(frozen=True)
class AugmentConfig:
    """Which training augmentations are on; the default is the course's crop + flip."""
    crop: str = "pad"
    crop_size: int = 224
    crop_scale: float = 0.25
    flip: bool = True
    jitter: float = 0.0
    blur_prob: float = 0.0
    jpeg_prob: float = 0.0
    erase_prob: float = 0.0

    @classmethod
    def from_recipe(cls, recipe):
        """The augmentations a recipe (config.recipe.Recipe) turns on: its knobs of the same names."""
        return cls(**{field.name: getattr(recipe, field.name) for field in dataclasses.fields(cls)})

    def __post_init__(self):
        if self.crop not in CROP_MODES:
            raise ValueError(f"crop must be one of {CROP_MODES}, not {self.crop!r}")
        if self.crop == "native" and not 0 < self.crop_size <= IMAGE_SIZE:
            raise ValueError(f"crop_size must be in 1..{IMAGE_SIZE} (got {self.crop_size})")
        if self.crop == "resized" and not 0 < self.crop_scale <= 1:
            raise ValueError(f"crop_scale must be in (0, 1] (got {self.crop_scale})")

    @property
    def output_size(self):
        """Side of the augmented training images."""
        return self.crop_size if self.crop == "native" else IMAGE_SIZE

    @property
    def crop_span(self):
        """Crop offsets are drawn uniformly in 0..crop_span."""
        return {"pad": 2 * CROP_PADDING, "native": IMAGE_SIZE - self.crop_size, "resized": 0, "none": 0}[self.crop]

    @property
    def photometric(self):
        """Whether any op beyond crop and flip is on."""
        return self.jitter > 0 or self.blur_prob > 0 or self.jpeg_prob > 0 or self.erase_prob > 0


def draw_crop_flip(count, generator, span=2 * CROP_PADDING):
    """Random crop offsets (2 x count, uniform in 0..span) and flips (count,) from a CPU ``generator``."""
    offsets = torch.randint(0, span + 1, (2, count), generator=generator)
    return offsets, torch.rand(count, generator=generator) < 0.5


def crop_flip(images, offsets, flips, padding=CROP_PADDING, size=None):
    """Crop each image of a batch to ``size`` (default: its own size) at ``offsets`` from its
    ``padding``-zero-padded copy, then flip where ``flips``: RandomCrop(size, padding) +
    RandomHorizontalFlip as two gathers."""
    batch, channels, height, width = images.shape
    size = size or height
    padded = torch.nn.functional.pad(images, (padding,) * 4) if padding else images
    rows = torch.arange(size, device=images.device) + offsets[0][:, None]
    columns = torch.arange(size, device=images.device)
    columns = torch.where(flips[:, None], size - 1 - columns, columns) + offsets[1][:, None]
    images = padded.gather(2, rows[:, None, :, None].expand(batch, channels, size, padded.shape[3]))
    return images.gather(3, columns[:, None, None, :].expand(batch, channels, size, size))


def draw_resized_boxes(count, size, min_scale, generator):
    """RandomResizedCrop windows for ``count`` images of side ``size``: (4 x count) rows top, left,
    height, width. As torchvision draws them: up to 10 tries of an area uniform in
    [min_scale, 1] of the image and an aspect ratio log-uniform in [3/4, 4/3], the first that
    fits, else the whole image."""
    shape = (CROP_ATTEMPTS, count)
    area = size * size * (min_scale + (1 - min_scale) * torch.rand(shape, generator=generator))
    log_low, log_high = math.log(CROP_ASPECT[0]), math.log(CROP_ASPECT[1])
    aspect = torch.exp(log_low + (log_high - log_low) * torch.rand(shape, generator=generator))
    width = (area * aspect).sqrt().round().long()
    height = (area / aspect).sqrt().round().long()
    fits = (width > 0) & (width <= size) & (height > 0) & (height <= size)
    first = fits.long().argmax(0)
    found = fits.any(0)
    width = torch.where(found, width.gather(0, first[None])[0], size)
    height = torch.where(found, height.gather(0, first[None])[0], size)
    top = (torch.rand(count, generator=generator) * (size - height + 1)).long()
    left = (torch.rand(count, generator=generator) * (size - width + 1)).long()
    return torch.stack([top, left, height, width])


def resized_crop_flip(images, boxes, flips, size=IMAGE_SIZE, as_uint8=True):
    """Each image's window ``boxes[:, i]`` (top, left, height, width) resized to ``size`` x ``size``
    (bilinear, one ``grid_sample`` for the batch), flipped where ``flips``; uint8 in and out (float in and out
    without ``as_uint8``). A whole-image window of the image's own size returns the image unchanged."""
    batch, _, height, width = images.shape
    top, left, box_height, box_width = boxes.to(images.device, torch.float32)
    theta = torch.zeros(batch, 2, 3, device=images.device)
    theta[:, 0, 0] = torch.where(flips.to(images.device), -box_width, box_width) / width
    theta[:, 0, 2] = (2 * left + box_width) / width - 1
    theta[:, 1, 1] = box_height / height
    theta[:, 1, 2] = (2 * top + box_height) / height - 1
    grid = torch.nn.functional.affine_grid(theta, (batch, images.shape[1], size, size), align_corners=False)
    resized = torch.nn.functional.grid_sample(images.float(), grid, mode="bilinear", padding_mode="border",
                                              align_corners=False)
    return resized.round().clamp(0, 255).to(torch.uint8) if as_uint8 else resized


def _grayscale(images):
    weights = torch.tensor(GRAY_WEIGHTS, device=images.device).view(1, 3, 1, 1)
    return (images * weights).sum(1, keepdim=True)


def color_jitter(images, factors):
    """uint8 batch with per-image brightness, contrast and saturation ``factors`` (3 x B) applied
    in that order, as torchvision's adjust_brightness/contrast/saturation do."""
    brightness, contrast, saturation = (factor.view(-1, 1, 1, 1) for factor in factors)
    images = (images.float() * brightness).clamp(0, 255)
    mean_gray = _grayscale(images).mean(dim=(1, 2, 3), keepdim=True)
    images = (contrast * images + (1 - contrast) * mean_gray).clamp(0, 255)
    images = (saturation * images + (1 - saturation) * _grayscale(images)).clamp(0, 255)
    return images.round().to(torch.uint8)


def gaussian_blur(images, sigmas):
    """uint8 batch blurred with a per-image Gaussian of standard deviation ``sigmas`` (B,) in
    pixels; sigma 0 leaves an image unchanged. Separable, reflect padding, one kernel size
    (covering 3 sigma of the largest sigma of the range) for the whole batch."""
    batch, channels, height, width = images.shape
    radius = math.ceil(3 * BLUR_SIGMA[1])
    taps = torch.arange(-radius, radius + 1, device=images.device, dtype=torch.float32)
    sigmas = sigmas.float().view(-1, 1)
    kernels = torch.exp(-taps ** 2 / (2 * sigmas.clamp_min(1e-6) ** 2))
    kernels = kernels / kernels.sum(1, keepdim=True)
    kernels = kernels.repeat_interleave(channels, 0)
    x = images.float().reshape(1, batch * channels, height, width)
    x = torch.nn.functional.pad(x, (radius, radius, 0, 0), mode="reflect")
    x = torch.nn.functional.conv2d(x, kernels.view(-1, 1, 1, 2 * radius + 1), groups=batch * channels)
    x = torch.nn.functional.pad(x, (0, 0, radius, radius), mode="reflect")
    x = torch.nn.functional.conv2d(x, kernels.view(-1, 1, 2 * radius + 1, 1), groups=batch * channels)
    return x.reshape(batch, channels, height, width).round().clamp(0, 255).to(torch.uint8)


def blur_chosen(images, sigmas):
    """``gaussian_blur`` of the images with sigma > 0: on the CPU only those are convolved; on a
    GPU the whole batch is (sigma 0 is the identity), so that choosing never waits on the device."""
    if images.device.type != "cpu":
        return gaussian_blur(images, sigmas)
    chosen = sigmas.nonzero().flatten()
    if not len(chosen):
        return images
    images = images.clone()
    images[chosen] = gaussian_blur(images[chosen], sigmas[chosen])
    return images


def jpeg_roundtrip(image, quality):
    """One uint8 CPU image (3 x H x W) JPEG-encoded at ``quality`` with PIL and decoded again."""
    buffer = io.BytesIO()
    Image.fromarray(image.permute(1, 2, 0).numpy()).save(buffer, format="JPEG", quality=quality)
    with Image.open(buffer) as decoded:
        return torch.from_numpy(np.asarray(decoded.convert("RGB")).transpose(2, 0, 1).copy())


def jpeg_recompress(images, qualities):
    """uint8 batch with the images whose ``qualities`` (CPU int tensor, B) is > 0 JPEG-encoded
    at that quality and decoded again, on the CPU."""
    chosen = qualities.nonzero().flatten()
    if not len(chosen):
        return images
    originals = images[chosen.to(images.device)].cpu()
    recompressed = torch.stack([jpeg_roundtrip(image, quality)
                                for image, quality in zip(originals, qualities[chosen].tolist())])
    images = images.clone()
    images[chosen.to(images.device)] = recompressed.to(images.device)
    return images


def draw_erasing(count, size, prob, generator):
    """Rectangles to erase in ``count`` images of side ``size``: (4 x count) rows top, left, height,
    width (0 where no image is erased, with probability 1 - ``prob``) and (3 x count) fill colours."""
    erased = torch.rand(count, generator=generator) < prob
    area = size * size * (ERASE_AREA[0] + (ERASE_AREA[1] - ERASE_AREA[0]) * torch.rand(count, generator=generator))
    log_low, log_high = math.log(ERASE_ASPECT[0]), math.log(ERASE_ASPECT[1])
    aspect = torch.exp(log_low + (log_high - log_low) * torch.rand(count, generator=generator))
    height = (area * aspect).sqrt().round().clamp(1, size).long() * erased
    width = (area / aspect).sqrt().round().clamp(1, size).long() * erased
    top = (torch.rand(count, generator=generator) * (size - height + 1)).long()
    left = (torch.rand(count, generator=generator) * (size - width + 1)).long()
    colours = torch.randint(0, 256, (3, count), generator=generator, dtype=torch.uint8)
    return torch.stack([top, left, height, width]), colours


def erase(images, boxes, colours):
    """uint8 batch with the rectangle ``boxes[:, i]`` (top, left, height, width) of image i filled
    with ``colours[:, i]``; a box of height 0 leaves its image unchanged."""
    top, left, height, width = (row.view(-1, 1) for row in boxes)
    rows = torch.arange(images.shape[2], device=images.device)
    columns = torch.arange(images.shape[3], device=images.device)
    inside_rows = (rows >= top) & (rows < top + height)
    inside_columns = (columns >= left) & (columns < left + width)
    inside = (inside_rows[:, :, None] & inside_columns[:, None, :])[:, None]
    return torch.where(inside, colours.T[:, :, None, None], images)


def mixup_batch(images, labels, alpha, generator):
    """Mixup of a (normalized, float) training batch: ``(lam * images + (1 - lam) * images[perm],
    labels[perm], lam)`` with lam ~ Beta(alpha, alpha) and perm a random pairing, both drawn from
    the CPU ``generator``. Train with ``lam * loss(labels) + (1 - lam) * loss(labels[perm])``."""
    seed = int(torch.randint(0, 2 ** 31 - 1, (1,), generator=generator))
    lam = float(np.random.default_rng(seed).beta(alpha, alpha))
    perm = torch.randperm(len(labels), generator=generator).to(images.device)
    mixed = images.mul(lam).add_(images[perm], alpha=1 - lam)
    return mixed, labels[perm], lam


class Augmenter:
    """Draws per-image parameters for ``config`` and applies them to uint8 batches."""

    def __init__(self, config):
        self.config = config

    def draw(self, count, generator=None, size=None):
        """Parameters for ``count`` images of side ``size`` (default: the config's output size) as
        CPU tensors, the image index last, from ``generator``."""
        config, params = self.config, {}
        if config.crop == "resized":
            params["boxes"] = draw_resized_boxes(count, IMAGE_SIZE, config.crop_scale, generator)
            params["flips"] = (torch.rand(count, generator=generator) < 0.5) & config.flip
        elif config.crop != "none" or config.flip:
            offsets, flips = draw_crop_flip(count, generator, config.crop_span)
            params["offsets"], params["flips"] = offsets, flips & config.flip
        if config.jitter > 0:
            params["jitter"] = 1 + config.jitter * (2 * torch.rand(3, count, generator=generator) - 1)
        if config.blur_prob > 0:
            blurred = torch.rand(count, generator=generator) < config.blur_prob
            sigmas = BLUR_SIGMA[0] + (BLUR_SIGMA[1] - BLUR_SIGMA[0]) * torch.rand(count, generator=generator)
            params["blur"] = torch.where(blurred, sigmas, 0.0)
        if config.jpeg_prob > 0:
            recompressed = torch.rand(count, generator=generator) < config.jpeg_prob
            qualities = torch.randint(JPEG_QUALITY[0], JPEG_QUALITY[1] + 1, (count,), generator=generator)
            params["jpeg"] = torch.where(recompressed, qualities, 0)
        if config.erase_prob > 0:
            params["erase"], params["erase_colours"] = draw_erasing(count, size or config.output_size,
                                                                    config.erase_prob, generator)
        return params

    @staticmethod
    def to(params, device):
        """``params`` with everything but the JPEG qualities (used on the host) moved to ``device``."""
        return {key: value if key == "jpeg" else value.to(device) for key, value in params.items()}

    @staticmethod
    def select(params, start, stop):
        """The parameters of images ``start:stop``."""
        return {key: value[..., start:stop] for key, value in params.items()}

    @staticmethod
    def take(params, positions):
        """The parameters of the images at ``positions`` (a tensor on the parameters' device; repeats allowed)."""
        return {key: value[..., positions.to(value.device)] for key, value in params.items()}

    def geometric(self, maps, params):
        """Float maps (B x C x H x W, e.g. manipulation masks) cropped, resized and flipped as ``__call__`` crops,
        resizes and flips the images of the same ``params``; the photometric ops leave maps alone."""
        config = self.config
        if "boxes" in params:
            maps = resized_crop_flip(maps, params["boxes"], params["flips"], as_uint8=False)
        if "offsets" in params:
            padding = CROP_PADDING if config.crop == "pad" else 0
            maps = crop_flip(maps, params["offsets"], params["flips"], padding, config.output_size)
        return maps

    def __call__(self, images, params):
        """The uint8 batch ``images`` augmented with ``params`` (one column per image)."""
        config = self.config
        if "boxes" in params:
            images = resized_crop_flip(images, params["boxes"], params["flips"])
        if "offsets" in params:
            padding = CROP_PADDING if config.crop == "pad" else 0
            images = crop_flip(images, params["offsets"], params["flips"], padding, config.output_size)
        if "jitter" in params:
            images = color_jitter(images, params["jitter"])
        if "blur" in params:
            images = blur_chosen(images, params["blur"])
        if "jpeg" in params:
            images = jpeg_recompress(images, params["jpeg"])
        if "erase" in params:
            images = erase(images, params["erase"], params["erase_colours"])
        return images


class ItemAugment:
    """The ops after crop and flip (jitter, blur, JPEG, erasing) for one uint8 image tensor,
    parameters drawn from torch's global generator: the per-item path's twin of the bulk ops."""

    def __init__(self, config):
        self.augmenter = Augmenter(AugmentConfig(crop="none", flip=False, jitter=config.jitter,
                                                 blur_prob=config.blur_prob, jpeg_prob=config.jpeg_prob,
                                                 erase_prob=config.erase_prob))

    def __call__(self, image):
        return self.augmenter(image[None], self.augmenter.draw(1, size=image.shape[-1]))[0]
