"""The decoded cache: every image of a split decoded once into a file of uint8 pixels (N x 3 x 256 x 256)
that training memory-maps (``decode_dataset`` -> ``DecodedFaces``), the per-item path's same check of every
image (``drop_unreadable``), and the digests that tell the data a run was trained on (``data_digest``) and
the images two splits share (``image_digest``).
"""
import collections
import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm import tqdm

from fakedetect.config.recipe import IMAGE_SIZE
from fakedetect.data.folders import CLASS_NAMES
from fakedetect.data.images import DatasetError, decode_pixels
from fakedetect.io.files import WriteError, atomic_write, held_lock, write_json

CACHE_VERSION = 4  # 2: lists the skipped files; 3: 16-bit and float images scaled by their mode; 4: raw pixels + index
IMAGE_BYTES = 3 * IMAGE_SIZE * IMAGE_SIZE  # one decoded image in the cache


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
                    pending.append((item[0], pool.submit(decode_pixels, item[1])))
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
