"""What self-blended training sees: real faces, the pseudo-fakes made from them and their blend masks;
plot_self_blend.py is the command."""
import json

import matplotlib.pyplot as plt
import numpy as np
import torch
from PIL import Image

from fakedetect.analysis.common import AnalysisError, save
from fakedetect.config.recipe import IMAGE_SIZE
from fakedetect.data.images import load_image

LANDMARKS_FIX = "give a JSON object of {image path under real/: [[x, y], ...]}"


def read_landmarks(path):
    """{relative image path: N x 2 float array} from a landmarks JSON file; AnalysisError naming the file."""
    try:
        with open(path) as file:
            entries = json.load(file)
    except OSError as error:
        raise AnalysisError(f"{path}: cannot read the landmarks file ({error.strerror}); {LANDMARKS_FIX}") from None
    except ValueError as error:
        raise AnalysisError(f"{path}: not valid JSON ({error}); {LANDMARKS_FIX}") from None
    if not isinstance(entries, dict):
        raise AnalysisError(f"{path}: holds a {type(entries).__name__}, not an object; {LANDMARKS_FIX}")
    landmarks = {}
    for name, points in entries.items():
        try:
            array = np.asarray(points, dtype=np.float32)
        except (TypeError, ValueError):
            array = None
        if array is None or array.ndim != 2 or array.shape[1] != 2 or len(array) < 3:
            raise AnalysisError(f"{path}: the landmarks of {name!r} are not a list of at least 3 [x, y] points; "
                                f"{LANDMARKS_FIX}")
        landmarks[name] = array
    return landmarks


def load_face(path, points=None):
    """An image as a uint8 3 x 256 x 256 tensor and its landmarks (None: NaN) in those pixels."""
    image = load_image(path, size=None)
    scale = np.array([IMAGE_SIZE / image.width, IMAGE_SIZE / image.height], dtype=np.float32)
    tensor = torch.from_numpy(np.asarray(image.resize((IMAGE_SIZE, IMAGE_SIZE), Image.BILINEAR)).copy())
    if points is None:
        return tensor.permute(2, 0, 1), None
    return tensor.permute(2, 0, 1), (points + 0.5) * scale - 0.5  # pixel centres, not corners, at integers


def plot_pseudo_fakes(images, fakes, masks, path, labels=None):
    """A grid of one row per image: uint8 ``images`` and ``fakes`` (B x 3 x H x W) and ``masks``
    (B x 1 x H x W in [0, 1]), each row titled with its entry of ``labels``; saved atomically at ``path``."""
    rows = len(images)
    fig, axes = plt.subplots(rows, 3, figsize=(3 * 2.4, rows * 2.5), squeeze=False)
    for row, (image, fake, mask) in enumerate(zip(images, fakes, masks)):
        label = f" ({labels[row]})" if labels else ""
        panels = ((image.permute(1, 2, 0), "real", None), (fake.permute(1, 2, 0), f"pseudo-fake{label}", None),
                  (mask[0], f"blend mask (max {float(mask.max()):.2f})", "gray"))
        for ax, (picture, title, colours) in zip(axes[row], panels):
            ax.imshow(picture.cpu().numpy(), cmap=colours, vmin=0, vmax=1 if colours else None)
            ax.set_title(title, fontsize=9)
            ax.axis("off")
    fig.suptitle("Self-blended pseudo-fakes and their masks")
    fig.tight_layout()
    return save(fig, path)
