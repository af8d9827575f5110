"""What self-blended training sees: real faces, the pseudo-fakes made from them and their blend masks.

    python plot_self_blend.py -d demo_fakes [--split train] [--count 6] [--seed 0] [--landmarks FILE]

Writes ``figures/self_blend_DATASET.png``: one row per real image of ``--split`` (drawn with
``--seed``): the image, its pseudo-fake (fakedetect/data/self_blend.py) and the blend mask (white: the
source copy replaces the image). ``--landmarks FILE`` is a JSON object mapping an image's path,
relative to the split's ``real/`` folder, to its face landmarks as [[x, y], ...] in that image's
own pixels (68 points, pixel (0, 0)'s centre at (0, 0)); those images use the landmark hull,
the others an ellipse about the crop's centre. Without ``--landmarks`` the split's own
``landmarks.json`` (build_faces_dataset.py) is used when there is one, else every image gets the ellipse.
"""
import sys

import numpy as np
import torch

from fakedetect.analysis.common import AnalysisError, dataset_root
from fakedetect.analysis.samples import readable_sample
from fakedetect.analysis.self_blend_figure import load_face, plot_pseudo_fakes, read_landmarks
from fakedetect.cli.analysis_common import exits_on_error
from fakedetect.cli.common import ArgumentParser
from fakedetect.config.recipe import MASK_MODES
from fakedetect.data.folders import LANDMARKS_FILE, SPLITS, FacesDataset, dataset_name, load_landmarks
from fakedetect.data.self_blend import self_blend
from fakedetect.io.files import check_output_path


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
