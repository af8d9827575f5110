"""What self-blended training sees: real faces, the pseudo-fakes made from them and their blend masks.

    python plot_self_blend.py -d demo_fakes [--split train] [--count 6] [--seed 0] [--landmarks FILE]

Writes ``figures/self_blend_DATASET.png``: one row per real image of ``--split`` (drawn with
``--seed``): the image, its pseudo-fake (self_blend.py) and the blend mask (white: the
source copy replaces the image). ``--landmarks FILE`` is a JSON object mapping an image's path,
relative to the split's ``real/`` folder, to its face landmarks as [[x, y], ...] in that image's
own pixels (68 points, pixel (0, 0)'s centre at (0, 0)); those images use the landmark hull,
the others an ellipse about the crop's centre. Without ``--landmarks`` the split's own
``landmarks.json`` (build_faces_dataset.py) is used when there is one, else every image gets the ellipse.
"""
import json
import sys

import matplotlib.pyplot as plt
import numpy as np
import torch
from PIL import Image

from analysis_common import AnalysisError, dataset_root, exits_on_error, save
from cli import ArgumentParser
from faces_dataset import IMAGE_SIZE, LANDMARKS_FILE, SPLITS, FacesDataset, dataset_name, load_image, load_landmarks
from fileio import check_output_path
from plot_samples_of_faces_datasets import readable_sample
from self_blend import MASK_MODES, self_blend

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


@exits_on_error
def main(argv=None):
    parser = ArgumentParser(description=__doc__)
    parser.add_argument("-d", "--dataset", default="demo_fakes",
                        help="dataset name under --data-root, or a path (default: demo_fakes)")
    parser.add_argument("--data-root", default="data", help="folder holding named datasets (default: data)")
    parser.add_argument("--split", default="train", choices=SPLITS, help="split to draw from (default: train)")
    parser.add_argument("--count", type=int, default=6, help="real images to show (default: 6)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the images and pseudo-fakes (default: 0)")
    parser.add_argument("--landmarks", help="JSON file of face landmarks (see above); default: the split's "
                                            f"{LANDMARKS_FILE} (build_faces_dataset.py), else ellipse masks")
    parser.add_argument("--mask", choices=MASK_MODES,
                        help="mask kind (default: hull-or-ellipse with landmarks, else ellipse)")
    parser.add_argument("--jpeg-prob", type=float, default=0.0,
                        help="probability of JPEG re-compression after blending (default: 0)")
    parser.add_argument("--figures-dir", default="figures", help="output folder (default: figures)")
    args = parser.parse_args(argv)
    check_output_path(parser, "--figures-dir", args.figures_dir, folder=True)
    if args.count < 1:
        parser.error(f"--count must be >= 1 (got {args.count})")
    if not 0 <= args.jpeg_prob <= 1:
        parser.error(f"--jpeg-prob must be in [0, 1] (got {args.jpeg_prob})")
    root = dataset_root(args.dataset, args.data_root)
    built = root / args.split / LANDMARKS_FILE
    if args.landmarks is None and built.is_file():  # the build's own: keys are under the split, not under real/
        landmarks = {key.removeprefix("real/"): value for key, value in load_landmarks(root / args.split).items()}
    else:
        landmarks = read_landmarks(args.landmarks) if args.landmarks else {}
    mask = args.mask or ("hull-or-ellipse" if landmarks else "ellipse")
    dataset = FacesDataset(root / args.split, require_both_classes=False)
    if not dataset.real_image_files:
        raise AnalysisError(f"{root / args.split / 'real'}: no real images; pass a split with a real/ folder")
    real_folder = root / args.split / "real"
    files = readable_sample(dataset.real_image_files, args.count, np.random.default_rng(args.seed))
    faces = [load_face(file, landmarks.get(file.relative_to(real_folder).as_posix())) for file in files]
    images = torch.stack([image for image, _ in faces])
    points = [lm for _, lm in faces if lm is not None]
    shape = points[0].shape if points else (3, 2)
    if any(lm.shape != shape for lm in points):
        raise AnalysisError(f"{args.landmarks}: the images drawn have different numbers of landmarks; "
                            "give every image the same points (68)")
    stacked = torch.from_numpy(np.stack([np.full(shape, np.nan, np.float32) if lm is None else lm
                                         for _, lm in faces]))
    generator = torch.Generator().manual_seed(args.seed)
    fakes, masks, made = self_blend(images, stacked, generator, mask=mask, jpeg_prob=args.jpeg_prob)
    has_landmarks = [lm is not None for _, lm in faces]
    labels = [("hull" if hull and mask != "ellipse" else "ellipse") if done else "no landmarks: unchanged"
              for hull, done in zip(has_landmarks, made.tolist())]
    plot_pseudo_fakes(images, fakes, masks, f"{args.figures_dir}/self_blend_{dataset_name(root)}.png", labels)
    return 0


if __name__ == "__main__":
    sys.exit(main())
