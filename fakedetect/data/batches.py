"""The two data paths that turn a split into normalized training and evaluation batches.

* per item (the course contract): ``FacesDataset`` decodes one image with PIL on every
  access and applies a torchvision transform; a ``DataLoader`` batches it (``ItemBatches``).
* decoded cache (the default): ``decode_dataset`` (cache.py) decodes every image once into a file of
  uint8 pixels on disk (N x 3 x 256 x 256), memory-mapped; ``CachedBatches`` then gathers,
  crops, flips and normalizes whole batches on the training device.

``make_batches`` picks the path from the dataset's type; both produce the same
distribution of augmented images (by default the course's random 256 crop of the 4-pixel
zero-padded image and horizontal flip with probability 0.5; see ``augment.py`` for the others).
Under torchrun each process takes its part of every batch (``Ranks``). The analysis draws its samples
and batches here too (``balanced_sample``, ``normalized_batches``).
"""
import collections
import copy
import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader, Dataset, RandomSampler, Sampler, Subset, WeightedRandomSampler
from torchvision import transforms
from tqdm import tqdm

from fakedetect.config.recipe import IMAGE_SIZE
from fakedetect.data.augment import CROP_ASPECT, CROP_PADDING, AugmentConfig, Augmenter, ItemAugment
from fakedetect.data.cache import DecodedFaces
from fakedetect.data.images import load_image
from fakedetect.data.normalization import Normalizer


@dataclass(frozen=True)
class Ranks:
    """This process's place among the ``world`` processes of a run (rank 0 writes)."""
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self):
        return self.rank == 0

    def part(self, start, stop):
        """This rank's consecutive ``[begin, end)`` of the positions ``[start, stop)``: the ranks' parts
        cover them exactly once, in rank order, their sizes differing by one at most."""
        count = stop - start
        return start + count * self.rank // self.world, start + count * (self.rank + 1) // self.world

    def batch_count(self, count, batch_size):
        """Training batches an epoch of ``count`` images has: a last global batch smaller than the number of
        processes is left out (a rank would get no image of it)."""
        full, rest = divmod(count, batch_size)
        return full + (rest >= self.world)


SINGLE = Ranks()  # one process: the whole of every batch


def item_transform(mean, std, train, augment=None):
    """The per-item (PIL) transform: when training, ``augment``'s crop + flip (default: the
    course's RandomCrop(256, padding=4) + flip) and photometric ops; then to tensor and normalize."""
    augment = augment or AugmentConfig()
    steps = []
    if train:
        if augment.crop == "pad":
            steps.append(transforms.RandomCrop(IMAGE_SIZE, padding=CROP_PADDING))
        elif augment.crop == "native":
            steps.append(transforms.RandomCrop(augment.crop_size))
        elif augment.crop == "resized":
            steps.append(transforms.RandomResizedCrop(IMAGE_SIZE, scale=(augment.crop_scale, 1.0), ratio=CROP_ASPECT))
        if augment.flip:
            steps.append(transforms.RandomHorizontalFlip())
    if train and augment.photometric:
        steps += [transforms.PILToTensor(), ItemAugment(augment), transforms.ConvertImageDtype(torch.float32)]
    else:
        steps.append(transforms.ToTensor())
    return transforms.Compose(steps + [transforms.Normalize(mean, std)])


def balanced_sample_weights(labels):
    """Per-image sampling weights that draw both classes equally often (1 / size of its class)."""
    labels = torch.as_tensor(labels, dtype=torch.int64)
    return 1.0 / torch.bincount(labels, minlength=2).double()[labels]


def prefetched(load, keys, depth=2):
    """``load(key)`` for each of ``keys`` in order, computed up to ``depth`` keys ahead on a background
    thread (torch's gathers release the GIL, so it overlaps the training step)."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = collections.deque()
        for key in keys:
            pending.append(pool.submit(load, key))
            if len(pending) > depth:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


class CachedBatches:
    """Batches of a DecodedFaces on ``device``: shuffled (or drawn with ``sample_weights``),
    augmented (train) and normalized in bulk; with several processes (``ranks``), this one's part of each
    global batch (training) or its block of the split (evaluation)."""

    def __init__(self, decoded, batch_size, device, normalizer, train, generator, augment=None, sample_weights=None,
                 self_blend=None, ranks=SINGLE, with_masks=False):
        self.decoded, self.batch_size, self.device = decoded, batch_size, torch.device(device)
        self.normalize, self.train, self.generator = normalizer, train, generator
        self.augmenter = Augmenter(augment or AugmentConfig())
        self.sample_weights, self.self_blend, self.ranks = sample_weights, self_blend, ranks
        self.with_masks = with_masks
        self.labels = decoded.labels.to(self.device)

    @property
    def drawn(self):
        """Images a step draws: ``batch_size``, or with self-blended pairs half of it (each real drawn brings its
        pseudo-fake); derived, so a changed ``batch_size`` takes effect."""
        pairs = self.train and self.self_blend is not None and self.self_blend.pairs
        return max(1, self.batch_size // 2) if pairs else self.batch_size

    def set_epoch(self, epoch):
        """Draw the pseudo-fakes of ``epoch`` (self-blending depends on the epoch, not on the batches drawn)."""
        if self.self_blend is not None:
            self.self_blend.set_epoch(epoch)

    def _spans(self):
        """The ``[begin, end)`` positions in the epoch's order of this rank's batches."""
        count, size = len(self.decoded), self.drawn
        if self.train:
            spans = [self.ranks.part(start, min(start + size, count)) for start in range(0, count, size)]
            return spans[:self.ranks.batch_count(count, size)]
        begin, end = self.ranks.part(0, count)
        return [(start, min(start + size, end)) for start in range(begin, end, size)]

    def __len__(self):
        return len(self._spans())

    def _order(self, count):
        if not self.train:
            return torch.arange(count)
        if self.sample_weights is not None:
            return torch.multinomial(self.sample_weights, count, replacement=True, generator=self.generator)
        return torch.randperm(count, generator=self.generator)

    def _gathered(self, order, spans):
        """The uint8 images of each span on the device. Images held on the device are indexed there; images
        in host memory or memory-mapped from the cache are gathered by a background thread (into pinned
        memory for a GPU), so the device never waits on the disk while the page cache can feed it."""
        images = self.decoded.images
        if images.is_cuda:
            order_on_device = order.to(self.device)
            for begin, end in spans:
                yield images[order_on_device[begin:end]]
            return
        pin = self.device.type == "cuda"

        def gather(span):
            index = order[span[0]:span[1]]
            batch = torch.empty((len(index), *images.shape[1:]), dtype=images.dtype, pin_memory=pin)
            return torch.index_select(images, 0, index, out=batch)
        for batch in prefetched(gather, spans):
            yield batch.to(self.device, non_blocking=True)

    def _masks(self, index, labels, size):
        """The known manipulation masks of images ``index`` (float B x 1 x size x size): zero for a real image,
        the dataset's own mask for a fake that has one (``decoded.masks``), NaN for a fake without."""
        masks = torch.zeros(len(index), 1, size, size, device=self.device)
        stored = getattr(self.decoded, "masks", None)
        if stored is not None:
            resized = F.interpolate(stored[index].to(self.device).float() / 255, size=(size, size), mode="bilinear",
                                    align_corners=False)
            known = self.decoded.mask_known[index].to(self.device).view(-1, 1, 1, 1)
            masks = torch.where(known, resized, masks)
            unknown = (labels == 1) & ~known.flatten()
        else:
            unknown = labels == 1
        masks[unknown] = math.nan
        return masks

    def __iter__(self):
        """One epoch. The order and augmentation of the whole epoch are drawn up front (the same on every
        rank) and sent to the device once, so the loop itself never waits on the host (JPEG
        re-compression, when on, is the exception: it runs on the host). Yields ``(images, labels)``, and
        with ``with_masks`` the images' manipulation masks third (see ``_masks``), augmented alike."""
        count = len(self.decoded)
        order = self._order(count)
        if self.train:
            params = Augmenter.to(self.augmenter.draw(count, self.generator), self.device)
        order_on_device = order.to(self.device)
        spans = self._spans()
        for (begin, end), batch in zip(spans, self._gathered(order, spans)):
            labels = self.labels[order_on_device[begin:end]]
            masks = self._masks(order[begin:end], labels, batch.shape[-1]) if self.with_masks else None
            positions = torch.arange(begin, end)  # each image's column of the epoch's augmentation parameters
            if self.train and self.self_blend is not None:  # before the crop: landmarks are in whole-image pixels
                batch, labels, masks, sources = self.self_blend.apply(batch, order[begin:end], labels, masks)
                positions = positions[sources]  # a pseudo-fake is augmented as its real image is
            if self.train:
                batch_params = Augmenter.take(params, positions.to(self.device))
                batch = self.augmenter(batch, batch_params)
                if masks is not None:
                    masks = self.augmenter.geometric(masks, batch_params)
            yield (self.normalize(batch), labels) if masks is None else (self.normalize(batch), labels, masks)


class RankBatches(Sampler):
    """The global batches of ``sampler``'s order (training), each cut to this rank's part; a last global
    batch smaller than the number of processes is left out, as CachedBatches does."""

    def __init__(self, sampler, batch_size, ranks):
        self.sampler, self.batch_size, self.ranks = sampler, batch_size, ranks

    def __len__(self):
        return self.ranks.batch_count(len(self.sampler), self.batch_size)

    def __iter__(self):
        indices = list(self.sampler)
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            begin, end = self.ranks.part(start, min(start + self.batch_size, len(indices)))
            yield indices[begin:end]


class ItemBatches:
    """Batches of a FacesDataset through a DataLoader with the per-item PIL transform; with several
    processes (``ranks``), this one's part of each global batch or its block of the split."""

    def __init__(self, dataset, batch_size, device, mean, std, train, generator, workers=0, channels_last=False,
                 augment=None, sample_weights=None, self_blend=None, ranks=SINGLE):
        dataset = copy.copy(dataset)
        dataset.transform = item_transform(mean, std, train, augment)
        self.self_blend = self_blend
        if train and self_blend is not None:
            dataset = SelfBlendedItems(dataset, self_blend)
        sampler = None
        if train and sample_weights is not None:
            sampler = WeightedRandomSampler(sample_weights, len(dataset), replacement=True, generator=generator)
        self.device = torch.device(device)
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        batching = dict(batch_size=batch_size, shuffle=train and sampler is None, sampler=sampler)
        if ranks.world > 1 and train:  # the same draws as one process makes, cut into this rank's parts
            batching = dict(batch_sampler=RankBatches(sampler or RandomSampler(dataset, generator=generator),
                                                      batch_size, ranks))
        elif ranks.world > 1:
            dataset = Subset(dataset, range(*ranks.part(0, len(dataset))))
        self.loader = DataLoader(dataset, **batching, generator=generator, num_workers=workers,
                                 pin_memory=self.device.type == "cuda")
        # Workers start afresh each epoch, seeded from ``generator``, so a resumed run draws the same augmentations.

    def __len__(self):
        return len(self.loader)

    def set_epoch(self, epoch):
        """Draw the pseudo-fakes of ``epoch``; the workers started for the epoch get them."""
        if self.self_blend is not None:
            self.self_blend.set_epoch(epoch)

    def __iter__(self):
        for images, labels in self.loader:
            images = images.to(self.device, non_blocking=True).contiguous(memory_format=self.memory_format)
            yield images, labels.to(self.device, non_blocking=True)


class SelfBlendedItems(Dataset):
    """A FacesDataset whose chosen real images become pseudo-fakes (self_blend.EpochBlends) before its
    transform: the per-item path's twin of CachedBatches' self-blending, image for image."""

    def __init__(self, dataset, blends):
        self.dataset, self.blends = dataset, blends

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, index):
        pixels = torch.from_numpy(np.array(load_image(self.dataset.files[index]))).permute(2, 0, 1)[None]
        label = torch.tensor([int(self.dataset.labels[index])])
        pixels, label, _, _ = self.blends.apply(pixels, torch.tensor([index]), label)
        return self.dataset.transform(Image.fromarray(pixels[0].permute(1, 2, 0).numpy())), int(label[0])


def make_batches(dataset, batch_size, device, mean, std, train, generator, workers=0, channels_last=False,
                 augment=None, sample_weights=None, self_blend=None, ranks=SINGLE, with_masks=False):
    """Batches for a split: the fast path for a DecodedFaces, the per-item path for a FacesDataset.
    ``augment`` (an AugmentConfig, default the course's crop + flip), ``sample_weights``
    (per-image, drawn with replacement; None = a shuffle) and ``self_blend`` (a self_blend.EpochBlends:
    real images made pseudo-fakes before the augmentations) apply when ``train``; ``ranks`` (Ranks)
    gives this process its part of every batch; ``with_masks`` (the decoded path only) adds the images'
    manipulation masks to every batch (CachedBatches)."""
    if isinstance(dataset, DecodedFaces):
        normalizer = Normalizer(mean, std, device, channels_last)
        return CachedBatches(dataset, batch_size, device, normalizer, train, generator, augment, sample_weights,
                             self_blend, ranks, with_masks)
    if with_masks or (self_blend is not None and self_blend.pairs):
        raise ValueError("manipulation masks and self-blended pairs need the decoded cache, not the per-item path")
    return ItemBatches(dataset, batch_size, device, mean, std, train, generator, workers, channels_last,
                       augment, sample_weights, self_blend, ranks)


def balanced_sample(labels, count, seed=0):
    """``count`` indices, half real and half fake where possible, drawn with ``seed``; sorted real first."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    pools = [np.flatnonzero(labels == label) for label in (0, 1)]
    wanted = [min(count // 2, len(pools[0])), min(count - count // 2, len(pools[1]))]
    wanted[0] = min(count - wanted[1], len(pools[0]))
    wanted[1] = min(count - wanted[0], len(pools[1]))
    return [int(i) for pool, n in zip(pools, wanted) for i in np.sort(rng.choice(pool, n, replace=False))]


def normalized_batches(dataset, normalization, device, batch_size=32, indices=None, desc=None):
    """Yield (normalized images, labels) on ``device`` in dataset order, as training evaluates:
    uint8 pixels scaled by (x / 255 - mean) / std, no augmentation. A tqdm bar when ``desc``."""
    dataset = copy.copy(dataset)
    dataset.transform = transforms.PILToTensor()
    if indices is not None:
        dataset = Subset(dataset, indices)
    normalize = Normalizer(*normalization, device)
    for images, labels in tqdm(DataLoader(dataset, batch_size=batch_size), desc=desc, disable=desc is None, leave=False):
        yield normalize(images.to(device)), labels.to(device)
