"""What the data look like: real/fake pairs from each dataset given.

    python plot_samples_of_faces_datasets.py -d demo_fakes demo_synthetic [--split train] [--pairs 3]

Writes ``figures/datasets_samples.png``: one row per dataset, ``--pairs`` real/fake pairs
drawn with ``--seed``. Labels come from the folder an image is in (``real/`` or ``fake/``).
"""
import sys

from fakedetect.analysis.common import dataset_root
from fakedetect.analysis.samples import plot_samples
from fakedetect.cli.analysis_common import exits_on_error
from fakedetect.cli.common import ArgumentParser
from fakedetect.data.folders import SPLITS, FacesDataset, dataset_name
from fakedetect.io.files import check_output_path


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
