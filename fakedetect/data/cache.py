"""Real/fake face folders and the two data paths that feed training.

A dataset split is a folder with ``real/`` and ``fake/`` sub-folders (label 0 = real,
1 = fake). Two interchangeable paths turn it into normalized batches:

* per item (the course contract): ``FacesDataset`` decodes one image with PIL on every
  access and applies a torchvision transform; a ``DataLoader`` batches it.
* decoded cache (the default): ``decode_dataset`` decodes every image once into a file of
  uint8 pixels on disk (N x 3 x 256 x 256), memory-mapped; ``CachedBatches`` then gathers,
  crops, flips and normalizes whole batches on the training device.

``make_batches`` picks the path from the dataset's type; both produce the same
distribution of augmented images (by default the course's random 256 crop of the 4-pixel
zero-padded image and horizontal flip with probability 0.5; see ``augment.py`` for the others).
"""
import collections
import copy
import hashlib
import json
import math
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps
from torch.utils.data import DataLoader, Dataset, RandomSampler, Sampler, Subset, WeightedRandomSampler
from torchvision import transforms
from tqdm import tqdm

from augment import CROP_ASPECT, CROP_PADDING, IMAGE_SIZE, AugmentConfig, Augmenter, ItemAugment
from distributed import SINGLE
from fileio import WriteError, atomic_write, held_lock, write_json

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
CLASS_NAMES = ("real", "fake")
SPLITS = ("train", "val", "test")  # a dataset folder holds these, each with CLASS_NAMES sub-folders
LANDMARKS_FILE = "landmarks.json"  # in a split folder: 68 face landmarks per crop (build_faces_dataset.py, dlib)
MASKS_FOLDER = "masks"  # in a split folder: the manipulation mask of each fake, named as it is under fake/
MASK_SIZE = 64  # masks are kept at this side for --mask-loss (the mask head's map is coarser still)
MAX_IMAGE_PIXELS = 8192 * 8192
CACHE_VERSION = 4  # 2: lists the skipped files; 3: 16-bit and float images scaled by their mode; 4: raw pixels + index
IMAGE_BYTES = 3 * IMAGE_SIZE * IMAGE_SIZE  # one decoded image in the cache
FLOAT_SLACK = 1 / 510  # float pixels within half an 8-bit step of [0, 1] round to 0 or 255 all the same

Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS


class DatasetError(ValueError):
    """A dataset folder or image that cannot be used; the message names the path and the fix."""


def list_image_files(folder):
    """Image files under ``folder`` (sub-folders included), sorted; hidden and non-image files skipped."""
    found = []
    for directory, subdirectories, names in os.walk(folder, followlinks=False):
        subdirectories[:] = sorted(d for d in subdirectories if not d.startswith("."))
        for name in names:
            path = Path(directory) / name
            if not name.startswith(".") and path.suffix.lower() in IMAGE_EXTENSIONS and path.is_file():
                found.append(path)
    return sorted(found)


def stored_mode(image):
    """How an opened image's file stores its pixels (Pillow's raw mode, e.g. ``I;16B``, ``I;32S``,
    ``F;32F``); call it before the pixels are loaded; "" when unknown."""
    args = image.tile[0].args if image.tile else ""
    return args if isinstance(args, str) else str(args[0]) if args else ""


def to_8_bit(image, raw_mode=""):
    """``image`` with 16-bit and float pixels mapped to 8 bits by their mode, never by their values:
    16-bit (modes I;16, I;16B, I;16L, I;16N, or I read from unsigned 16-bit samples) as value / 257,
    so 65535 is 255 and a dark image stays dark; float (F) read as [0, 1] and multiplied by 255.
    Other modes are returned as they are (``convert`` maps them faithfully). Raises ValueError saying
    why when no faithful 8-bit mapping exists: 32-bit or signed integer pixels, float pixels outside
    [0, 1] (NaN included)."""
    sixteen_bit = image.mode == "I" and raw_mode.startswith("I;16") and "S" not in raw_mode
    if image.mode.startswith("I;16") or sixteen_bit:
        array = np.asarray(image, dtype=np.float64) / 257
    elif image.mode == "I":
        raise ValueError(f"32-bit or signed integer pixels ({raw_mode or 'I'}) have no standard 8-bit scale")
    elif image.mode == "F":
        array = np.asarray(image, dtype=np.float64)
        low, high = (np.min(array), np.max(array)) if array.size else (0.0, 0.0)
        if not (-FLOAT_SLACK <= low and high <= 1 + FLOAT_SLACK):  # NaN fails both
            raise ValueError(f"float pixels from {low:.4g} to {high:.4g}, outside [0, 1], "
                             "the range float images are read in")
        array = array * 255
    else:
        return image
    return Image.fromarray(np.clip(np.round(array), 0, 255).astype(np.uint8))


def load_image(path, size=IMAGE_SIZE):
    """Open an image as a ``size`` x ``size`` RGB PIL image (``size=None``: keep its own size).

    EXIF orientation is honoured; grayscale, palette, RGBA, CMYK and other 8-bit modes are
    converted to 8-bit RGB, 16-bit and float images scaled by their mode (see ``to_8_bit``);
    images of another size are resized to 256x256 (bilinear). Raises DatasetError naming the
    file when it cannot be decoded, has pixels with no faithful 8-bit mapping (32-bit integers,
    float values outside [0, 1]) or is too large (more than MAX_IMAGE_PIXELS pixels: a
    decompression bomb is refused, not decoded).
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                raw_mode = stored_mode(image)
                image = ImageOps.exif_transpose(image)
                image.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise DatasetError(f"{path}: image too large (over {MAX_IMAGE_PIXELS} pixels); "
                           "resize it or remove it from the dataset") from None
    except Exception as error:
        raise DatasetError(f"{path}: cannot read image ({type(error).__name__}: {error}); "
                           "replace or remove the file") from None
    try:
        image = to_8_bit(image, raw_mode)
        if image.mode == "P":
            image = image.convert("RGBA")
        if image.mode != "RGB":
            image = image.convert("RGB")  # raises ValueError for the few modes Pillow cannot convert (La)
    except ValueError as error:
        raise DatasetError(f"{path}: cannot map its {image.mode} pixels to 8-bit RGB ({error}); "
                           "save it as 8- or 16-bit (float: in [0, 1]) or remove the file") from None
    if size is not None and image.size != (size, size):
        image = image.resize((size, size), Image.BILINEAR)
    return image


def dataset_name(path):
    """The name a dataset's runs and figures carry: its folder's name (``.`` and ``..`` made
    absolute first; symbolic links are not followed)."""
    return Path(os.path.abspath(path)).name


def find_dataset(name, data_root):
    """The dataset folder: ``name`` itself when it is a folder, else ``data_root/name``; None if neither."""
    for candidate in (Path(name), Path(data_root) / name):
        if candidate.is_dir():
            return candidate
    return None


def dataset_not_found(name, data_root):
    """Why ``find_dataset`` found nothing and what to do, naming the datasets that are under ``data_root``."""
    found = sorted(path.name for path in Path(data_root).glob("*") if (path / "train").is_dir())
    hint = f" (datasets under {data_root}: {', '.join(found)})" if found else ""
    return (f"{name}: not found as a path or under --data-root {str(data_root)!r}{hint}; run 'python demo_data.py' "
            "for the demo datasets or pass the folder that holds train/ val/ test/")


def load_landmarks(split_folder):
    """{image path under ``split_folder`` ("real/a.png"): 68x2 float array of landmarks in that image's pixels},
    read from the ``landmarks.json`` that build_faces_dataset.py writes with the dlib detector.

    Raises DatasetError naming the file when it is missing or malformed.
    """
    path = Path(split_folder) / LANDMARKS_FILE
    fix = "rebuild the dataset with build_faces_dataset.py --detector dlib (pip install dlib-bin face-recognition-models)"
    if not path.is_file():
        raise DatasetError(f"{path}: not found; {fix}")
    try:
        landmarks = {image: np.asarray(points, dtype=np.float64) for image, points in json.loads(path.read_text()).items()}
    except (ValueError, TypeError, AttributeError) as error:
        raise DatasetError(f"{path}: not a landmarks file ({type(error).__name__}: {error}); {fix}") from None
    wrong = next((image for image, points in landmarks.items() if points.shape != (68, 2)), None)
    if wrong is not None:
        raise DatasetError(f"{path}: {wrong} has landmarks of shape {landmarks[wrong].shape}, not 68x2; {fix}")
    return landmarks


class FacesDataset(Dataset):
    """Images of ``root_path/real`` (label 0) and ``root_path/fake`` (label 1).

    Files are sorted, real first; every image is returned as 256x256 RGB (see
    ``load_image``: other sizes are resized). ``__getitem__`` returns
    ``(transform(image), label)``, or a float tensor in [0, 1] when ``transform`` is None.
    With ``require_both_classes=False`` (evaluation splits) one of ``real/`` and ``fake/``
    may be missing or empty.
    """

    def __init__(self, root_path, transform=None, require_both_classes=True):
        self.root_path = Path(root_path)
        self.transform = transform
        if not self.root_path.is_dir():
            raise DatasetError(f"{self.root_path}: dataset folder not found; "
                               "pass a folder that holds real/ and fake/ sub-folders")
        files = {}
        for name in CLASS_NAMES:
            folder = self.root_path / name
            if not folder.is_dir() and require_both_classes:
                raise DatasetError(f"{folder}: missing; put the {name} face images of this split in a '{name}/' sub-folder")
            files[name] = list_image_files(folder) if folder.is_dir() else []
            if not files[name] and require_both_classes:
                raise DatasetError(f"{folder}: no images found (looked for {', '.join(IMAGE_EXTENSIONS)}); "
                                   f"add {name} face images")
        if not any(files.values()):
            raise DatasetError(f"{self.root_path}: no images in real/ or fake/ (looked for "
                               f"{', '.join(IMAGE_EXTENSIONS)}); add face images")
        self._set_files(files["real"], files["fake"])

    def _set_files(self, real_image_files, fake_image_files):
        self.real_image_files, self.fake_image_files = real_image_files, fake_image_files
        self.files = real_image_files + fake_image_files
        self.labels = [0] * len(real_image_files) + [1] * len(fake_image_files)

    def keep_fraction(self, fraction):
        """Keep an evenly spaced ``fraction`` of each class's files, in file order (0.5: every
        second image, from the first); at least one image per class. For learning curves."""
        if not 0 < fraction <= 1:
            raise ValueError(f"fraction must be in (0, 1], got {fraction}")
        exact = Fraction(fraction).limit_denominator(10 ** 6)  # 0.55 is 11/20, not 0.55000000000000004

        def spaced(files):
            count = max(1, math.ceil(len(files) * exact)) if files else 0
            return [files[math.floor(index / exact)] for index in range(count)]
        self._set_files(spaced(self.real_image_files), spaced(self.fake_image_files))
        return self

    def keep_real_only(self):
        """Drop the fake files (never read): for training on real images and their self-blended fakes."""
        if not self.real_image_files:
            raise DatasetError(f"{self.root_path / 'real'}: no images found; add real face images")
        self._set_files(self.real_image_files, [])
        return self

    def __len__(self):
        return len(self.files)

    def __getitem__(self, index):
        image = load_image(self.files[index])
        image = self.transform(image) if self.transform is not None else transforms.functional.to_tensor(image)
        return image, self.labels[index]


class DecodedFaces(Dataset):
    """A split decoded once: ``images`` uint8 (N x 3 x 256 x 256), ``labels`` int64 (N,)."""

    def __init__(self, images, labels, files, root_path, mapped_from=None):
        self.images = images
        self.labels = labels
        self.files = list(files)
        self.root_path = Path(root_path)
        self.mapped_from = mapped_from  # the cache file the images are memory-mapped from (None: in memory)

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, index):
        return self.images[index], int(self.labels[index])


def _file_lines(dataset, with_mtime):
    """One line per file of a split: its path under the split, label, size (and modification time)."""
    for path, label in zip(dataset.files, dataset.labels):
        stat = path.stat()
        mtime = f"|{stat.st_mtime_ns}" if with_mtime else ""
        yield f"{path.relative_to(dataset.root_path)}|{int(label)}|{stat.st_size}{mtime}\n".encode()


def _cache_key(dataset):
    digest = hashlib.sha256(f"v{CACHE_VERSION} size{IMAGE_SIZE}".encode())
    for line in _file_lines(dataset, with_mtime=True):
        digest.update(line)
    return digest.hexdigest()[:20]


def data_digest(splits):
    """A short digest of the splits' file names, labels, sizes and decoded pixels (``image_digests``, set
    when a split is decoded or checked): the same data gives the same digest wherever it is copied (a
    resumed run checks it has the data it started with)."""
    digest = hashlib.sha256()
    for split in splits:
        pixels = hashlib.sha256(b"".join(getattr(split, "image_digests", []))).hexdigest()[:16]
        digest.update(f"{split.root_path.name}|{pixels}\n".encode())
        for line in _file_lines(split, with_mtime=False):
            digest.update(line)
    return digest.hexdigest()[:16]


def image_digest(array):
    """A hash of one decoded image's pixels (uint8 C x H x W), the same whichever path decoded it: it finds
    duplicates whatever their file names, and changed pixels under the same file sizes."""
    return hashlib.sha1(np.ascontiguousarray(array).tobytes()).digest()


def _decode_one(path):
    try:
        return np.asarray(load_image(path)).transpose(2, 0, 1).copy(), None
    except DatasetError as error:
        return None, str(error)


def _readable_images(dataset, workers, strict, progress, skipped):
    """Yield ``(index, uint8 C x H x W array)`` of each readable image of ``dataset``, in order, decoded on
    ``workers`` threads a bounded window ahead (memory stays a few images per thread, whatever the split's
    size); an unreadable one is warned about and ``(file relative to the split, reason)`` appended to
    ``skipped``, or with ``strict`` raises DatasetError at once."""
    workers = workers or os.cpu_count()
    pool = ThreadPoolExecutor(max_workers=workers)
    try:
        pending = collections.deque()
        files = iter(enumerate(dataset.files))
        with tqdm(total=len(dataset), disable=not progress, desc=f"decoding {dataset.root_path}", leave=False) as bar:
            while True:
                while len(pending) < 4 * workers and (item := next(files, None)) is not None:
                    pending.append((item[0], pool.submit(_decode_one, item[1])))
                if not pending:
                    break
                index, future = pending.popleft()
                array, error = future.result()
                bar.update()
                if error is None:
                    yield index, array
                else:
                    path = dataset.files[index]
                    _warn_skipped([error], strict)
                    skipped.append((str(path.relative_to(dataset.root_path)), error.removeprefix(f"{path}: ")))
    finally:
        pool.shutdown(wait=True, cancel_futures=True)  # on an error, the queued files are not decoded


def _warn_skipped(errors, strict):
    """One warning line per unreadable file, or with ``strict`` DatasetError on the first."""
    for error in errors:
        if strict:
            raise DatasetError(error + " (or run without --strict to skip bad files)")
        print(f"warning: skipped {error}")


def _check_what_is_left(dataset, skipped, kept_labels):
    """Count the ``skipped`` files; DatasetError when a class of ``dataset`` has no readable image left."""
    if skipped:
        print(f"warning: {len(skipped)} of {len(dataset)} files in {dataset.root_path} could not be read and were skipped")
    for label, name in enumerate(CLASS_NAMES):
        if label in dataset.labels and label not in kept_labels:
            raise DatasetError(f"{dataset.root_path / name}: no readable images left; add {name} face images")


def drop_unreadable(dataset, workers=None, strict=False, progress=True):
    """Check that every image of a FacesDataset decodes (the per-item path's check before
    training): unreadable files are dropped with one warning line each, as ``decode_dataset``
    does, or with ``strict`` raise DatasetError; a class left without images raises DatasetError."""
    skipped, kept, digests = [], set(), []
    for index, array in _readable_images(dataset, workers, strict, progress, skipped):
        kept.add(index)
        digests.append(image_digest(array))
    dataset.image_digests = digests
    _check_what_is_left(dataset, skipped, {dataset.labels[index] for index in kept})
    if skipped:
        readable = [(file, label) for index, (file, label) in enumerate(zip(dataset.files, dataset.labels)) if index in kept]
        dataset._set_files(*([file for file, label in readable if label == wanted] for wanted in (0, 1)))
    return dataset


class _CacheBusy(RuntimeError):
    pass


def _mapped_faces(pixels_path, root_path, labels, files, digests):
    """The DecodedFaces of a cache's pixel file, memory-mapped (private and lazy: nothing is read yet)."""
    count = len(labels)
    images = torch.from_file(str(pixels_path), shared=False, size=count * IMAGE_BYTES, dtype=torch.uint8)
    decoded = DecodedFaces(images.view(count, 3, IMAGE_SIZE, IMAGE_SIZE), torch.tensor(labels), files, root_path,
                           mapped_from=pixels_path)
    decoded.image_digests = digests
    return decoded


def _decoded_from_cache(pixels_path, dataset, strict):
    """The DecodedFaces of a complete cache (its index written last, so a killed decode left none), its
    pixels memory-mapped from disk rather than read; None when there is no complete cache."""
    index_path = pixels_path.with_suffix(".json")
    if not index_path.is_file():
        return None
    try:
        index = json.loads(index_path.read_text())
        count = len(index["labels"])
        if pixels_path.stat().st_size != count * IMAGE_BYTES or len(index["files"]) != count:
            raise ValueError("pixels and index disagree")
        decoded = _mapped_faces(pixels_path, dataset.root_path, index["labels"],
                                [dataset.root_path / file for file in index["files"]],
                                [bytes.fromhex(digest) for digest in index["digests"]])
        skipped = [(str(file), str(reason)) for file, reason in index["skipped"]]
    except (OSError, ValueError, KeyError, TypeError, RuntimeError):
        print(f"warning: {pixels_path}: unreadable cache, decoding again")
        return None
    _warn_skipped([f"{dataset.root_path / file}: {reason}" for file, reason in skipped], strict)
    _check_what_is_left(dataset, skipped, set(decoded.labels.tolist()))
    return decoded


def _decode_to_cache(pixels_path, dataset, workers, strict, progress):
    """Decode ``dataset`` image by image straight into the cache's pixel file (never the whole split in
    memory), then write its index; both atomically, the index last. Returns the cache's DecodedFaces (the
    skipped files were warned about as they were met)."""
    kept, skipped, digests = [], [], []

    def write_pixels(tmp):
        with open(tmp, "wb") as pixels:
            for index, array in _readable_images(dataset, workers, strict, progress, skipped):
                pixels.write(array.data)
                kept.append(index)
                digests.append(image_digest(array))
            _check_what_is_left(dataset, skipped, {dataset.labels[index] for index in kept})
            pixels.flush()
            os.fsync(pixels.fileno())
    atomic_write(pixels_path, write_pixels)
    labels, files = [int(dataset.labels[index]) for index in kept], [dataset.files[index] for index in kept]
    write_json(pixels_path.with_suffix(".json"), {
        "labels": labels, "files": [file.relative_to(dataset.root_path).as_posix() for file in files],
        "skipped": skipped, "digests": [digest.hex() for digest in digests]})
    return _mapped_faces(pixels_path, dataset.root_path, labels, files, digests)


def _decode_in_memory(dataset, workers, strict, progress):
    """The DecodedFaces of ``dataset`` held in host memory (no cache: N x 196,608 bytes)."""
    images = torch.empty((len(dataset), 3, IMAGE_SIZE, IMAGE_SIZE), dtype=torch.uint8)
    kept, skipped, digests = [], [], []
    for index, array in _readable_images(dataset, workers, strict, progress, skipped):
        images[len(kept)] = torch.from_numpy(array)
        kept.append(index)
        digests.append(image_digest(array))
    labels = torch.tensor([dataset.labels[i] for i in kept], dtype=torch.int64)
    _check_what_is_left(dataset, skipped, set(labels.tolist()))
    images = images[:len(kept)].clone() if len(kept) < len(dataset) else images
    decoded = DecodedFaces(images, labels, [dataset.files[i] for i in kept], dataset.root_path)
    decoded.image_digests = digests
    return decoded


def decode_dataset(dataset, cache_dir=".cache", workers=None, strict=False, progress=True):
    """Decode every image of a FacesDataset once into a DecodedFaces (uint8, CPU).

    Decoding runs on ``workers`` threads (default: all CPU cores), straight into a file of raw pixels in
    ``cache_dir`` (``{split}-{key}.u8``, 196,608 bytes an image, with its index ``{split}-{key}.json``)
    that training memory-maps: host memory stays bounded whatever the split's size, the page cache holding
    what is read. The key is made of the sorted file list, sizes and modification times, so a later run
    skips decoding and a changed folder is decoded again; a decode killed half-way leaves no index, so no
    half cache is ever trusted. ``cache_dir=None`` (or a cache that cannot be written) decodes into host
    memory instead. Undecodable files are skipped with one warning line each (again on every run that
    reads the cache), unless ``strict``; a class left without images raises DatasetError.
    """
    if cache_dir is None:
        return _decode_in_memory(dataset, workers, strict, progress)
    pixels_path = Path(cache_dir) / f"{dataset.root_path.name}-{_cache_key(dataset)}.u8"
    decoded = _decoded_from_cache(pixels_path, dataset, strict)
    if decoded is not None:
        return decoded
    try:
        with held_lock(pixels_path.with_name(f".{pixels_path.name}.lock"), _CacheBusy):
            for stale in pixels_path.parent.glob(f".{pixels_path.stem}.*.tmp"):  # of a decode killed earlier
                stale.unlink(missing_ok=True)
            finished_meanwhile = _decoded_from_cache(pixels_path, dataset, strict)  # by the lock's last holder
            return finished_meanwhile or _decode_to_cache(pixels_path, dataset, workers, strict, progress)
    except _CacheBusy as holder:
        print(f"note: {pixels_path} is being written by another process ({holder}); decoding into memory")
    except WriteError as error:
        print(f"warning: could not write the decode cache: {error.problem}; decoding into memory")
    return _decode_in_memory(dataset, workers, strict, progress)


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
            arrays = [array for array, _ in map(_decode_one, [dataset.files[i] for i in chunk]) if array is not None]
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
        # with pairs, a step draws half its batch: each real drawn brings its pseudo-fake
        self.drawn = max(1, batch_size // 2) if train and self_blend is not None and self_blend.pairs else batch_size

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


def landmarks_tensor(dataset):
    """N x 68 x 2 landmarks of a split's images (FacesDataset or DecodedFaces) in the pixels of the
    decoded IMAGE_SIZE image, from the split's landmarks.json (build_faces_dataset.py with dlib); NaN rows
    for images it does not list, and all NaN when there is no such file."""
    landmarks = torch.full((len(dataset.files), 68, 2), math.nan)
    if not (Path(dataset.root_path) / LANDMARKS_FILE).is_file():
        return landmarks
    listed = load_landmarks(dataset.root_path)
    for row, path in enumerate(dataset.files):
        points = listed.get(Path(path).relative_to(dataset.root_path).as_posix())
        if points is not None:
            with Image.open(path) as image:  # the header only: landmarks are in the file's pixels
                width, height = image.size
            scale = torch.tensor([IMAGE_SIZE / width, IMAGE_SIZE / height])
            landmarks[row] = (torch.as_tensor(points, dtype=torch.float32) + 0.5) * scale - 0.5
    return landmarks


def mask_path(dataset, index):
    """Where the manipulation mask of fake ``dataset.files[index]`` is: ``masks/`` beside ``fake/``, same name
    (255 = manipulated; the demo datasets have one for every fake)."""
    return dataset.root_path / MASKS_FOLDER / Path(dataset.files[index]).relative_to(dataset.root_path / "fake")


def read_mask(path, shape):
    """A mask file as 8-bit values (uint8 array) of ``shape`` (nearest-neighbour resized when needed); 16-bit
    and float masks are scaled by their mode, as images are (``to_8_bit``). DatasetError naming the file when
    it cannot be read so."""
    try:
        with Image.open(path) as image:
            try:
                mask = to_8_bit(image, stored_mode(image)).convert("L")
            except ValueError as error:
                raise DatasetError(f"{path}: cannot map the mask's {image.mode} pixels to 8 bits ({error}); "
                                   "save it as 8-bit (255 = manipulated)") from None
    except OSError as error:
        raise DatasetError(f"{path}: cannot read the mask ({type(error).__name__}: {error}); "
                           "replace or remove the file") from None
    if mask.size != (shape[1], shape[0]):
        mask = mask.resize((shape[1], shape[0]), Image.NEAREST)
    return np.asarray(mask)


def masks_tensor(dataset, size=MASK_SIZE):
    """``(masks, known)`` of a split's images for --mask-loss: uint8 N x 1 x ``size`` x ``size`` (255 =
    manipulated) and which are known: every real image (an empty mask) and every fake with a file in
    ``masks/`` (``mask_path``); a fake without one is not known (its mask is never guessed)."""
    masks = torch.zeros(len(dataset.files), 1, size, size, dtype=torch.uint8)
    known = torch.as_tensor(dataset.labels, dtype=torch.int64).cpu() == 0
    for row in (~known).nonzero().flatten().tolist():
        path = mask_path(dataset, row)
        if path.is_file():
            masks[row, 0] = torch.from_numpy(read_mask(path, (size, size)).copy())
            known[row] = True
    return masks, known


def place_images(decoded, device, max_fraction=0.5):
    """Move a DecodedFaces' images to ``device`` when they fit in ``max_fraction`` of its free memory, else
    leave them where they are (memory-mapped from the cache, or in host memory), to be gathered batch by
    batch; returns where they are, for the log."""
    device = torch.device(device)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        if decoded.images.numel() <= max_fraction * free:
            decoded.images = decoded.images.to(device)
            return f"held in {device} memory"
        print(f"note: {decoded.root_path} ({decoded.images.numel() / 2**30:.1f} GiB) does not fit in "
              f"{max_fraction:.0%} of free GPU memory; its batches are gathered on the host")
    return f"memory-mapped from {decoded.mapped_from}" if decoded.mapped_from else "held in host memory"


def make_batches(dataset, batch_size, device, mean, std, train, generator, workers=0, channels_last=False,
                 augment=None, sample_weights=None, self_blend=None, ranks=SINGLE, with_masks=False):
    """Batches for a split: the fast path for a DecodedFaces, the per-item path for a FacesDataset.
    ``augment`` (an AugmentConfig, default the course's crop + flip), ``sample_weights``
    (per-image, drawn with replacement; None = a shuffle) and ``self_blend`` (a self_blend.EpochBlends:
    real images made pseudo-fakes before the augmentations) apply when ``train``; ``ranks`` (distributed.Ranks)
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
