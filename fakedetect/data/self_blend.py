"""Self-Blended Images (Shiohara & Yamasaki, CVPR 2022): pseudo-fakes made from real faces.

A real face becomes a fake of itself: a copy of the image (the source) is changed in colour
and sharpness, shifted and scaled a little, and blended back into the image (the target)
through a soft mask around the face. A detector trained on such pairs learns the blending
boundary and the mismatch of statistics that every face swap leaves, not one generator's
fingerprint, and needs no fakes at all.

As in augment.py, the op is batched on uint8 images (B x 3 x H x W, CPU or GPU) with per-image
parameters drawn up front from a CPU ``torch.Generator`` (``SelfBlender.draw``, image index
last), so the same seed gives the same parameters on any device (and, on the CPU, the same
pseudo-fakes; a GPU's may differ from them by rounding) and a batch gives what its images give
one by one. Landmarks are (x, y) pixel coordinates of the images as they are
blended (pixel (0, 0)'s centre at (0, 0), as dlib gives them): self-blend before cropping.

In a training batch loop (uint8 ``images`` and ``labels`` on the device, ``landmarks`` B x 68 x 2)::

    blender = SelfBlender(SelfBlendConfig(mask="hull-or-ellipse"))
    chosen = ((labels == 0) & (torch.rand(len(labels), generator=generator) < probability).to(labels.device))
    chosen = chosen.nonzero().flatten()
    params = blender.to(blender.draw(len(chosen), generator), images.device)
    fakes, masks, made = blender(images[chosen], landmarks[chosen], params)
    images[chosen], labels[chosen] = fakes, made.long()

Per image, following the paper and its public code:
* mask: the convex hull of the face landmarks (``mask="hull"``) or an ellipse about the crop's
  centre (``"ellipse"``; ``"hull-or-ellipse"``: the ellipse for images without landmarks).
  Images without a mask (no landmarks under ``"hull"``) are returned unchanged, with an
  empty mask and ``made`` False.
* source colour: RGB shift (each channel +-20, probability 0.3), hue rotation (+-5 degrees) and
  saturation (x 0.9-1.1; the public code's HueSaturationValue limits of +-0.3 uint8 steps round
  to nothing), brightness (+-0.1 of full scale) and contrast (x 0.9-1.1 about the mean grey).
* source sharpness, even odds: sharpened (3x3 unsharp mask, amount 1.8-4.5, albumentations'
  Sharpen alpha 0.2-0.5 as SBI uses it; the one-pixel image border is left as it is) or
  downscaled 2x or 4x (nearest) and back (bilinear).
* source geometry: translated (+-3% across, +-1.5% down) and scaled (0.95-1/0.95) about the
  image centre; the mask moves with it.
* mask shape: elastic deformation (a smooth random displacement field, 1.5 px standard deviation
  at 256 pixels), eroded by 1-8% of the side (never to nothing) and feathered over 3-15% (up to
  1.33x wider along one axis: SBI blurs the mask at a random size of 192-256 pixels per axis),
  scaled to a maximum of the blend ratio, drawn from {0.25, 0.5, 0.75, 1, 1, 1}.
* blend: ``image + mask * (source - image)``, so where the mask is 0 the image is unchanged.
* JPEG re-compression of the pseudo-fake, with probability ``jpeg_prob``, quality 40-100 (off by
  default: SBI compresses real and fake training images alike, which augment.py's ``jpeg_prob``
  does for the whole batch; compressing only the fakes would teach "compressed = fake").

Only the source is changed (SBI changes the source or, half the time, the target):
so the pseudo-fake differs from its real image only inside the mask, and the mask is the exact
manipulation mask. The mask's blur is computed in closed form: the distance to the hull's
boundary (the hull as the intersection of 32 half-planes, one per direction, from its support
function) through a smoothstep ramp, on a grid of a quarter of the side, upsampled (bilinear).
That is the blurred edge of SBI's two Gaussian blurs without any convolution, and exactly zero
outside the feathered band.
"""
import hashlib
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from fakedetect.config.recipe import MASK_MODES
from fakedetect.data.augment import GRAY_WEIGHTS, Augmenter, jpeg_recompress

RGB_SHIFT, RGB_SHIFT_PROB = 20.0, 0.3
HUE_DEGREES = 5.0
SATURATION = (0.9, 1.1)
BRIGHTNESS = 0.1  # of full scale (255)
CONTRAST = (0.9, 1.1)
SHARPEN_AMOUNT = (1.8, 4.5)
DOWNSCALE_FACTORS = (2, 4)
TRANSLATE = (0.03, 0.015)  # fraction of the width, of the height
SCALE = (0.95, 1 / 0.95)
ELASTIC_GRID = 12  # control points per side of the displacement field
ELASTIC_STD = 1.5 / 256  # fraction of the side
EROSION = (0.01, 0.08)  # fraction of the side
FEATHER = (0.03, 0.15)  # fraction of the side
STRETCH = (0.75, 1.0)  # distances along an axis scaled by this: feather and erosion up to 1.33x wider
BLEND_RATIOS = (0.25, 0.5, 0.75, 1.0, 1.0, 1.0)
ELLIPSE_CENTRE = ((0.5, 0.02), (0.58, 0.02))  # (mean, +-) fraction of the width, of the height
ELLIPSE_RADII = ((0.25, 0.33), (0.28, 0.36))  # (low, high) fraction of the width, of the height
JPEG_QUALITY = (40, 100)
MASK_GRID_FACTOR = 4  # the mask is computed on a grid this many times coarser, then upsampled
CPU_CHUNK = 16  # images blended at a time on the CPU: a chunk's float copies stay in the caches
HULL_DIRECTIONS = 32  # half-planes approximating a hull: at most 0.5% of its radius too large


@dataclass(frozen=True)
class SelfBlendConfig:
    """Which mask the pseudo-fakes use and how often they are JPEG re-compressed."""
    mask: str = "hull"
    jpeg_prob: float = 0.0

    def __post_init__(self):
        if self.mask not in MASK_MODES:
            raise ValueError(f"mask must be one of {MASK_MODES}, not {self.mask!r}")
        if not 0 <= self.jpeg_prob <= 1:
            raise ValueError(f"jpeg_prob must be in [0, 1] (got {self.jpeg_prob})")


def _uniform(low, high, shape, generator):
    return low + (high - low) * torch.rand(shape, generator=generator)


def _colour_transform(images, params):
    """Each image's colour changes as one affine map of RGB (3 x 3 matrix, offset), clamped once."""
    count, device = images.shape[0], images.device
    eye = torch.eye(3, device=device).expand(count, 3, 3)
    gray = torch.tensor(GRAY_WEIGHTS, device=device)
    # hue: a rotation about the grey axis (Rodrigues' formula)
    axis = torch.full((3,), 3 ** -0.5, device=device)
    cross = torch.tensor([[0, -1, 1], [1, 0, -1], [-1, 1, 0]], device=device, dtype=torch.float32) * 3 ** -0.5
    angle = params["hue"].view(-1, 1, 1)
    hue = torch.cos(angle) * eye + torch.sin(angle) * cross + (1 - torch.cos(angle)) * torch.outer(axis, axis)
    saturation = params["saturation"].view(-1, 1, 1)
    matrix = (saturation * eye + (1 - saturation) * gray.expand(3, 3)) @ hue
    offset = (matrix @ params["shift"].T[:, :, None])[..., 0] + 255 * params["brightness"][:, None]
    # contrast about the mean grey of the image as changed so far
    contrast = params["contrast"].view(-1, 1)
    mean_gray = (matrix @ images.mean(dim=(2, 3))[:, :, None])[..., 0] @ gray + offset @ gray
    matrix = contrast[:, :, None] * matrix
    offset = contrast * offset + (1 - contrast) * mean_gray[:, None]
    changed = torch.baddbmm(offset[:, :, None], matrix, images.flatten(2))
    return changed.view(images.shape).clamp_(0, 255)


def _sharpen_or_downscale(images, params):
    """``images`` (float, changed in place) sharpened by each one's amount (unsharp mask, 3x3 box;
    amount 0 leaves an image as it is; the one-pixel border is kept), then those chosen
    downscaled 2x or 4x (nearest) and back (bilinear)."""
    count, _, height, width = images.shape
    amount = params["sharpen"].view(-1, 1, 1, 1)
    # x + amount * (x - box3(x)) as one 3x3 kernel per image, one depthwise convolution for the batch
    kernels = (-amount / 9).expand(count, 3, 3, 3).clone()
    kernels[:, :, 1, 1] += 1 + amount.view(-1, 1)
    inner = F.conv2d(images.view(1, -1, height, width), kernels.view(-1, 1, 3, 3), groups=3 * count)
    images[..., 1:-1, 1:-1] = inner.view(count, 3, height - 2, width - 2).clamp_(0, 255)
    for factor in DOWNSCALE_FACTORS:
        chosen = (params["downscale"] == factor).nonzero().flatten()
        if len(chosen):
            # in whole grey levels, as SBI's uint8 images; uint8 resizing is 10x faster on the CPU
            small = images[chosen, :, ::factor, ::factor].round()
            if images.device.type == "cpu":
                small = small.to(torch.uint8)
            resized = F.interpolate(small, size=(height, width), mode="bilinear", align_corners=False)
            images[chosen] = resized.float() if images.device.type == "cpu" else resized.round()
    return images


def _warp_source(source, params):
    """Each image sampled (bilinear, border pixels repeated) shifted by ``translate`` (fractions
    of the width and height) and scaled by ``scale`` about its centre."""
    count, _, height, width = source.shape
    scale, (shift_x, shift_y) = params["scale"].view(-1, 1, 1), (shift.view(-1, 1, 1) for shift in params["translate"])
    # grid_sample coordinates: -1 and 1 are the outer edges of the image (align_corners=False)
    columns = (2 * torch.arange(width, device=source.device) + 1) / width - 1
    rows = (2 * torch.arange(height, device=source.device) + 1) / height - 1
    grid = torch.stack([((columns[None, None, :] - 2 * shift_x) / scale).expand(count, height, width),
                        ((rows[None, :, None] - 2 * shift_y) / scale).expand(count, height, width)], -1)
    return F.grid_sample(source, grid, mode="bilinear", padding_mode="border", align_corners=False)


def _directions(device):
    angles = torch.arange(HULL_DIRECTIONS, device=device) * (2 * math.pi / HULL_DIRECTIONS)
    return torch.cos(angles), torch.sin(angles)


def _support(landmarks, ellipses, use_hull, use_ellipse, stretch):
    """Support function (B x directions) of each image's mask shape in stretched coordinates:
    the landmarks' convex hull where ``use_hull``, the ellipse where ``use_ellipse``, else an
    empty set (-inf)."""
    ux, uy = _directions(stretch.device)
    sx, sy = stretch[0][:, None], stretch[1][:, None]
    support = torch.full((len(sx), HULL_DIRECTIONS), -math.inf, device=stretch.device)
    if landmarks is not None and use_hull.any():
        points = torch.nan_to_num(landmarks)  # rows with NaN are not used (use_hull False)
        projections = (points[..., 0, None] * sx[:, None] * ux + points[..., 1, None] * sy[:, None] * uy)
        support = torch.where(use_hull[:, None], projections.amax(1), support)
    centre_x, centre_y, radius_x, radius_y = ellipses
    ellipse = (centre_x[:, None] * sx * ux + centre_y[:, None] * sy * uy
               + torch.sqrt((radius_x[:, None] * sx * ux) ** 2 + (radius_y[:, None] * sy * uy) ** 2))
    return torch.where(use_ellipse[:, None], ellipse, support)


def _mask(params, support, height, width):
    """Soft blend masks (B x 1 x H x W) in [0, 1] and whether each is non-empty: smoothstep of the
    distance to each shape's boundary, on the coarse grid where the source's shift and scale
    and the elastic displacement move it, upsampled (bilinear), scaled to a maximum of the
    blend ratio."""
    count, device = support.shape[0], support.device
    grid_height, grid_width = math.ceil(height / MASK_GRID_FACTOR), math.ceil(width / MASK_GRID_FACTOR)
    rows = (torch.arange(grid_height, device=device) + 0.5) * (height / grid_height) - 0.5
    columns = (torch.arange(grid_width, device=device) + 0.5) * (width / grid_width) - 0.5
    centre_x, centre_y = (width - 1) / 2, (height - 1) / 2
    scale = params["scale"].view(-1, 1, 1)
    shift_x, shift_y = (shift.view(-1, 1, 1) for shift in params["translate"])
    field = F.interpolate(params["elastic"].permute(3, 0, 1, 2), size=(grid_height, grid_width), mode="bicubic",
                          align_corners=True) * (ELASTIC_STD * max(height, width))
    x = centre_x + (columns[None, None, :] - shift_x * width - centre_x) / scale + field[:, 0]
    y = centre_y + (rows[None, :, None] - shift_y * height - centre_y) / scale + field[:, 1]
    ux, uy = _directions(device)
    stretched = torch.stack([ux * params["stretch"][0][:, None], uy * params["stretch"][1][:, None]], 1)
    points = torch.stack([x.flatten(1), y.flatten(1)], -1)  # B x grid points x 2
    distance = (support[:, None, :] - torch.bmm(points, stretched)).amin(-1)  # to the nearest half-plane's edge
    side = max(height, width)
    # erosion never empties a mask (SBI thresholds its blurred mask at the maximum, not at 1)
    erosion = torch.minimum(params["erosion"] * side, distance.amax(1).clamp_min(0))[:, None]
    feather = params["feather"][:, None] * side
    ramp = ((distance - erosion) / feather + 0.5).clamp_(0, 1)
    masks = (ramp * ramp * (3 - 2 * ramp)).view(count, 1, grid_height, grid_width)
    masks = F.interpolate(masks, size=(height, width), mode="bilinear", align_corners=False)
    peak = masks.amax(dim=(1, 2, 3))
    made = peak > 0
    masks *= torch.where(made, params["ratio"] / peak.clamp_min(1e-12), 0.0).view(-1, 1, 1, 1)
    return masks, made


class SelfBlender:
    """Draws per-image self-blending parameters and makes pseudo-fakes of uint8 batches with them."""

    def __init__(self, config=SelfBlendConfig()):
        self.config = config

    def draw(self, count, generator=None):
        """Parameters for ``count`` images as CPU tensors, the image index last, from ``generator``.
        The same numbers are drawn whatever the config, so a seed means the same draws."""
        params = {}
        shifted = torch.rand(count, generator=generator) < RGB_SHIFT_PROB
        params["shift"] = _uniform(-RGB_SHIFT, RGB_SHIFT, (3, count), generator) * shifted
        params["hue"] = _uniform(-HUE_DEGREES, HUE_DEGREES, count, generator) * (math.pi / 180)
        params["saturation"] = _uniform(*SATURATION, count, generator)
        params["brightness"] = _uniform(-BRIGHTNESS, BRIGHTNESS, count, generator)
        params["contrast"] = _uniform(*CONTRAST, count, generator)
        sharpened = torch.rand(count, generator=generator) < 0.5
        params["sharpen"] = _uniform(*SHARPEN_AMOUNT, count, generator) * sharpened
        factors = torch.randint(0, len(DOWNSCALE_FACTORS), (count,), generator=generator)
        params["downscale"] = torch.where(sharpened, 0, torch.tensor(DOWNSCALE_FACTORS)[factors])
        params["translate"] = torch.stack([_uniform(-limit, limit, count, generator) for limit in TRANSLATE])
        params["scale"] = torch.exp(_uniform(math.log(SCALE[0]), math.log(SCALE[1]), count, generator))
        params["elastic"] = torch.randn((2, ELASTIC_GRID, ELASTIC_GRID, count), generator=generator)
        params["erosion"] = _uniform(*EROSION, count, generator)
        params["feather"] = _uniform(*FEATHER, count, generator)
        params["stretch"] = _uniform(*STRETCH, (2, count), generator)
        params["ratio"] = torch.tensor(BLEND_RATIOS)[torch.randint(0, len(BLEND_RATIOS), (count,), generator=generator)]
        (mean_x, spread_x), (mean_y, spread_y) = ELLIPSE_CENTRE
        params["ellipse"] = torch.stack([_uniform(mean_x - spread_x, mean_x + spread_x, count, generator),
                                         _uniform(mean_y - spread_y, mean_y + spread_y, count, generator),
                                         _uniform(*ELLIPSE_RADII[0], count, generator),
                                         _uniform(*ELLIPSE_RADII[1], count, generator)])
        recompressed = torch.rand(count, generator=generator) < self.config.jpeg_prob
        qualities = torch.randint(JPEG_QUALITY[0], JPEG_QUALITY[1] + 1, (count,), generator=generator)
        params["jpeg"] = torch.where(recompressed, qualities, 0)
        return params

    to = staticmethod(Augmenter.to)  # parameters are laid out as augment.py's: image index last, JPEG on the host
    select = staticmethod(Augmenter.select)

    def __call__(self, images, landmarks, params):
        """Pseudo-fakes of the uint8 batch ``images`` (B x 3 x H x W) with ``params`` (from ``draw``,
        on the images' device via ``to``): ``(pseudo-fakes uint8 B x 3 x H x W, masks float
        B x 1 x H x W in [0, 1], made bool B)``. ``landmarks``: B x N x 2 (x, y) pixel
        coordinates, a row with NaN for an image without them, or None for none. An image
        not ``made`` is returned unchanged with an all-zero mask."""
        count, _, height, width = images.shape
        device = images.device
        if count == 0:  # a training batch with no image chosen
            empty_masks = torch.zeros(0, 1, height, width, device=device)
            return images.clone(), empty_masks, torch.zeros(0, dtype=torch.bool, device=device)
        if device.type == "cpu" and count > CPU_CHUNK:  # the same results (per image), 2-3x faster
            chunks = [slice(start, start + CPU_CHUNK) for start in range(0, count, CPU_CHUNK)]
            parts = [self(images[chunk], None if landmarks is None else landmarks[chunk],
                          self.select(params, chunk.start, chunk.stop)) for chunk in chunks]
            return tuple(torch.cat(part) for part in zip(*parts))
        if landmarks is not None:
            landmarks = torch.as_tensor(landmarks, dtype=torch.float32).to(device)
            has_landmarks = ~landmarks.isnan().flatten(1).any(1)
        else:
            has_landmarks = torch.zeros(count, dtype=torch.bool, device=device)
        mode = self.config.mask
        use_hull = has_landmarks if mode != "ellipse" else torch.zeros_like(has_landmarks)
        use_ellipse = ~use_hull if mode != "hull" else torch.zeros_like(has_landmarks)
        centre_x, centre_y, radius_x, radius_y = params["ellipse"]
        ellipses = (centre_x * width - 0.5, centre_y * height - 0.5, radius_x * width, radius_y * height)
        support = _support(landmarks, ellipses, use_hull, use_ellipse, params["stretch"])

        masks, made = _mask(params, support, height, width)

        target = images.float()
        source = _sharpen_or_downscale(_colour_transform(target, params), params)
        source = _warp_source(source, params)
        # every step keeps values in [0, 255]: rounding is adding 0.5 and truncating
        blended = torch.lerp(target, source, masks).add_(0.5).to(torch.uint8)
        if params["jpeg"].any():  # else no wait for the device
            blended = jpeg_recompress(blended, params["jpeg"] * made.cpu())
        return blended, masks, made


def self_blend(images, landmarks, generator=None, mask="hull", jpeg_prob=0.0):
    """Pseudo-fakes of a uint8 batch in one call: parameters drawn from the CPU ``generator``,
    applied on the images' device. Returns ``(pseudo-fakes, masks, made)`` (see ``SelfBlender``)."""
    blender = SelfBlender(SelfBlendConfig(mask=mask, jpeg_prob=jpeg_prob))
    params = blender.to(blender.draw(len(images), generator), images.device)
    return blender(images, landmarks, params)


class EpochBlends:
    """The pseudo-fakes of a training split, epoch by epoch: which real images get a pseudo-fake (each with
    ``probability``) and their parameters, drawn from a generator seeded by (``seed``, epoch) alone and
    kept by image index, so both data paths, any batch order and a resumed run make the same pseudo-fakes.
    ``landmarks``: N x 68 x 2 in the decoded images' pixels (NaN rows for images without them) or None.

    The pseudo-fake replaces its real image in the batch, or with ``pairs`` (as the SBI paper builds its
    batches) joins the batch beside it, so the network sees each real next to its own fake."""

    def __init__(self, probability, labels, landmarks, seed, config=SelfBlendConfig(), pairs=False):
        self.blender, self.probability, self.seed, self.pairs = SelfBlender(config), probability, seed, pairs
        self.labels = torch.as_tensor(labels, dtype=torch.int64).cpu()
        self.landmarks = None if landmarks is None else torch.as_tensor(landmarks, dtype=torch.float32)
        self.set_epoch(1)

    def set_epoch(self, epoch):
        generator = torch.Generator().manual_seed(int(hashlib.sha256(f"{self.seed}/{epoch}".encode()).hexdigest()[:15], 16))
        self.chosen = (self.labels == 0) & (torch.rand(len(self.labels), generator=generator) < self.probability)
        self.slots = torch.cumsum(self.chosen, 0) - 1  # where a chosen image's parameters are
        self.params = self.blender.draw(int(self.chosen.sum()), generator)

    def apply(self, images, indices, labels, masks=None):
        """The uint8 batch ``images`` (dataset indices ``indices``, on the CPU) with its chosen real images'
        pseudo-fakes, labelled 1 (fake), in their place or, with ``pairs``, after the batch (a chosen image
        whose mask is empty, for want of landmarks, stays real and gets no partner). Returns ``(images,
        labels, masks, sources)``: ``sources`` (CPU) is the batch position each returned image comes from, so
        that a pseudo-fake gets the crop, flip and other augmentations of its real image; ``masks`` (float
        B x 1 x H x W, given for the batch, or None for none) gain the blend masks of the pseudo-fakes."""
        sources = torch.arange(len(indices))
        chosen = self.chosen[indices].nonzero().flatten()
        if not len(chosen):
            return images, labels, masks, sources
        picked = indices[chosen]
        params = self.blender.to({key: value[..., self.slots[picked]] for key, value in self.params.items()},
                                 images.device)
        landmarks = None if self.landmarks is None else self.landmarks[picked]
        on_device = chosen.to(images.device)
        fakes, fake_masks, made = self.blender(images[on_device], landmarks, params)
        if self.pairs:
            kept = made.cpu()
            made_device = made.to(images.device)
            images = torch.cat([images, fakes[made_device]])
            labels = torch.cat([labels, torch.ones(int(kept.sum()), dtype=labels.dtype, device=labels.device)])
            if masks is not None:
                masks = torch.cat([masks, fake_masks[made_device].to(masks.dtype)])
            return images, labels, masks, torch.cat([sources, chosen[kept]])
        images, labels = images.clone(), labels.clone()
        images[on_device] = fakes
        labels[on_device[made.to(images.device)]] = 1
        if masks is not None:
            masks = masks.clone()
            masks[on_device] = torch.where(made.view(-1, 1, 1, 1), fake_masks.to(masks.dtype), masks[on_device])
        return images, labels, masks, sources

    def expected_class_counts(self):
        """(real, fake) image counts of an epoch on average: what class-balancing weights must equalize."""
        real = float((self.labels == 0).sum())
        fake = float((self.labels == 1).sum()) + real * self.probability
        return (real if self.pairs else real * (1 - self.probability)), fake
