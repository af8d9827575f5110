"""Reading one image file as the toolkit sees every image: 256x256 8-bit RGB, EXIF orientation honoured,
16-bit and float pixels scaled by their mode, decompression bombs refused (``load_image``), and the image
files of a folder (``list_image_files``).
"""
import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from fakedetect.config.recipe import IMAGE_SIZE

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
MAX_IMAGE_PIXELS = 8192 * 8192
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


def decode_pixels(path):
    """``(uint8 C x H x W array, None)`` of the image at ``path`` (``load_image``), or ``(None, why)`` when it
    cannot be read (the DatasetError's message)."""
    try:
        return np.asarray(load_image(path)).transpose(2, 0, 1).copy(), None
    except DatasetError as error:
        return None, str(error)
