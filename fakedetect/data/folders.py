"""Real/fake face folders: a dataset holds ``train/``, ``val/`` and ``test/``, each split ``real/`` (label 0)
and ``fake/`` (label 1) images, and optionally the faces' landmarks (``landmarks.json``) and the fakes'
manipulation masks (``masks/``). ``FacesDataset`` is the course's per-item dataset of one split; finding a
dataset by name and reading its landmarks and masks are here too.
"""
import json
import math
import os
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision import transforms

from fakedetect.config.recipe import IMAGE_SIZE
from fakedetect.data.images import IMAGE_EXTENSIONS, DatasetError, list_image_files, load_image, stored_mode, to_8_bit

CLASS_NAMES = ("real", "fake")
SPLITS = ("train", "val", "test")  # a dataset folder holds these, each with CLASS_NAMES sub-folders
LANDMARKS_FILE = "landmarks.json"  # in a split folder: 68 face landmarks per crop (build_faces_dataset.py, dlib)
MASKS_FOLDER = "masks"  # in a split folder: the manipulation mask of each fake, named as it is under fake/
MASK_SIZE = 64  # masks are kept at this side for --mask-loss (the mask head's map is coarser still)


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
