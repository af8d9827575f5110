"""What the data look like: real/fake pairs from each dataset given.

    python plot_samples_of_faces_datasets.py -d demo_fakes demo_synthetic [--split train] [--pairs 3]

Writes ``figures/datasets_samples.png``: one row per dataset, ``--pairs`` real/fake pairs
drawn with ``--seed``. Labels come from the folder an image is in (``real/`` or ``fake/``).
"""
import sys

import matplotlib.pyplot as plt
import numpy as np

from analysis_common import dataset_root, exits_on_error, save
from cli import ArgumentParser
from faces_dataset import SPLITS, DatasetError, FacesDataset, dataset_name, load_image
from fileio import check_output_path


def readable_sample(files, count, rng):
    """Up to ``count`` of ``files`` drawn without replacement, in file order; files that cannot be
    read are skipped with a warning, as training skips them."""
    chosen = []
    for index in rng.permutation(len(files)):
        if len(chosen) == count:
            break
        try:
            load_image(files[index])
        except DatasetError as error:
            print(f"warning: skipped {error}")
            continue
        chosen.append(index)
    return [files[index] for index in sorted(chosen)]


def sample_pairs(dataset, pairs, seed=0):
    """``pairs`` (real file, fake file) tuples of a FacesDataset's readable images, drawn without
    replacement with ``seed``."""
    rng = np.random.default_rng(seed)
    real = readable_sample(dataset.real_image_files, pairs, rng)
    fake = readable_sample(dataset.fake_image_files, pairs, rng)
    return list(zip(real, fake))


def plot_samples(datasets, pairs, seed, path):
    """One row of real/fake pairs per (name, FacesDataset) in ``datasets``."""
    fig, axes = plt.subplots(len(datasets), 2 * pairs, figsize=(2 * pairs * 2.0, len(datasets) * 2.4), squeeze=False)
    for row, (name, dataset) in zip(axes, datasets):
        for ax in row:
            ax.axis("off")
        for column, files in enumerate(sample_pairs(dataset, pairs, seed)):
            for offset, (label, file) in enumerate(zip(("real", "fake"), files)):
                ax = row[2 * column + offset]
                ax.imshow(load_image(file))
                ax.set_title(f"{name}: {label}", fontsize=10, color=("tab:blue", "tab:red")[offset])
    fig.suptitle("Real / fake pairs (label = folder of the image)")
    fig.tight_layout()
    return save(fig, path)


@exits_on_error
def main(argv=None):
    parser = ArgumentParser(description=__doc__)
    parser.add_argument("-d", "--datasets", nargs="+", default=["demo_fakes", "demo_synthetic"],
                        help="dataset names under --data-root, or paths (default: demo_fakes demo_synthetic)")
    parser.add_argument("--data-root", default="data", help="folder holding named datasets (default: data)")
    parser.add_argument("--split", default="train", choices=SPLITS, help="split to draw from (default: train)")
    parser.add_argument("--pairs", type=int, default=3, help="real/fake pairs per dataset (default: 3)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the sample selection (default: 0)")
    parser.add_argument("--figures-dir", default="figures", help="output folder (default: figures)")
    args = parser.parse_args(argv)
    check_output_path(parser, "--figures-dir", args.figures_dir, folder=True)
    if args.pairs < 1:
        parser.error(f"--pairs must be >= 1 (got {args.pairs})")
    datasets = []
    for name in args.datasets:
        root = dataset_root(name, args.data_root)
        datasets.append((dataset_name(root), FacesDataset(root / args.split)))
    plot_samples(datasets, args.pairs, args.seed, f"{args.figures_dir}/datasets_samples.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
