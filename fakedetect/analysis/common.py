"""What the analysis scripts share: the run's command-line arguments, loading the run (JSON,
checkpoint, evaluated split) with one-line errors, deterministic sample selection, normalized
batches exactly as training sees them, and the figure style. File names come from runs.py."""
import copy
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
from torch.utils.data import DataLoader, Subset
from torchvision import transforms
from tqdm import tqdm

import cli
from cli import add_device_flag, add_run_flags, check_run_flags
from faces_dataset import (SPLITS, FacesDataset, Normalizer, dataset_name, dataset_not_found, drop_unreadable,
                           find_dataset)
from fileio import check_output_path, save_figure
from models import load_trained_model, resolve_device
from runs import model_file_name, read_history

DPI = 150
plt.rcParams.update({"font.size": 11, "axes.titlesize": 12, "axes.labelsize": 11, "legend.fontsize": 10,
                     "xtick.labelsize": 10, "ytick.labelsize": 10, "figure.titlesize": 13})


class AnalysisError(RuntimeError):
    """A missing run file or dataset; the message names it and how to make it."""


exits_on_error = cli.exits_on_error(AnalysisError)  # decorates each analysis script's main


def add_run_arguments(parser, model=True, evaluation=True):
    """The flags naming a run as train_main.py does, plus where figures go (and what to evaluate)."""
    add_run_flags(parser)
    parser.add_argument("--figures-dir", default="figures", help="where figures and JSON go (default: figures)")
    if model:
        add_device_flag(parser)
        parser.add_argument("-b", "--batch-size", type=int, default=32, help="evaluation batch size (default: 32)")
    if evaluation:
        parser.add_argument("--eval-dataset", default=None,
                            help="evaluate on this dataset instead of -d (cross-dataset generalization)")
        parser.add_argument("--split", default="test", choices=SPLITS, help="split of the evaluated dataset (default: test)")
        parser.add_argument("--seed", type=int, default=0, help="seed of the sample selection (default: 0)")
    return parser


def parse_args(parser, argv):
    """Parse ``argv``, check the batch size, the device, the run name and that ``--figures-dir`` can be made
    (parser.error); fill in the default device and ``args.run``, the Run the flags name."""
    args = parser.parse_args(argv)
    if getattr(args, "batch_size", 1) < 1:
        parser.error(f"--batch-size must be >= 1 (got {args.batch_size})")
    if hasattr(args, "device"):
        args.device = resolve_device(args.device, parser)
    args.run = check_run_flags(parser, args)
    datasets = [args.dataset, *getattr(args, "eval_datasets", [])] + (
        [args.eval_dataset] if getattr(args, "eval_dataset", None) else [])
    inputs = [args.run.json_path, args.run.best_path] + [
        folder / split for name in datasets if (folder := find_dataset(name, args.data_root))
        for split in SPLITS]
    check_output_path(parser, "--figures-dir", args.figures_dir, inputs, folder=True)
    return args


def train_command(args):
    """The train_main.py command that makes the run these flags name."""
    command = f"python train_main.py -m {args.model} -d {args.dataset} -o {args.optimizer}"
    for flag, value, default in (("--data-root", args.data_root, "data"), ("--run-name", args.run_name, None),
                                 ("--out-dir", args.out_dir, "out"), ("--checkpoint-dir", args.checkpoint_dir, "checkpoints")):
        if value is not None and str(value) != default:
            command += f" {flag} {value}"
    return command


def missing_run(path, args):
    """AnalysisError for a run file that does not exist: names it, the command that makes it, and other runs found."""
    others = sorted(p.stem for p in Path(args.out_dir).glob(f"{args.run.dataset}_{model_file_name(args.model)}_*.json"))
    hint = f" (runs found in {args.out_dir}: {', '.join(others)}; pass -o or --run-name)" if others else ""
    return AnalysisError(f"{path}: not found; train the run first: {train_command(args)}{hint}")


def load_history(args):
    """The run's per-epoch metrics JSON."""
    if not args.run.json_path.is_file():
        raise missing_run(args.run.json_path, args)
    return read_history(args.run.json_path, f"train the run again: {train_command(args)} --overwrite")


def load_run_model(args):
    """(model in eval mode on args.device, checkpoint) of the run's best-on-validation checkpoint."""
    checkpoint_path = args.run.best_path
    if not checkpoint_path.is_file():
        raise missing_run(checkpoint_path, args)
    model, checkpoint = load_trained_model(checkpoint_path, args.device)
    if checkpoint["model_name"] != args.model:
        raise AnalysisError(f"{checkpoint_path}: holds a {checkpoint['model_name']} model, not {args.model}; "
                            f"pass -m {checkpoint['model_name']}")
    return model, checkpoint


def evaluated_name(args):
    return dataset_name(args.eval_dataset or args.dataset)


def dataset_root(name, data_root):
    """The folder of dataset ``name`` (a path, or a name under ``data_root``)."""
    root = find_dataset(name, data_root)
    if root is None:
        raise AnalysisError(f"dataset {dataset_not_found(name, data_root)}")
    return root


def load_split(args):
    """The split evaluated (``--split`` of ``--eval-dataset``, default the run's own dataset);
    files that cannot be read are skipped with a warning, as training skips them (which decodes
    the split once more, in parallel, before the analysis)."""
    split = FacesDataset(dataset_root(args.eval_dataset or args.dataset, args.data_root) / args.split,
                         require_both_classes=False)
    return drop_unreadable(split, progress=False)


def figure_prefix(args):
    """The run's name, plus ``_on_{evaluated dataset}`` for a cross-dataset evaluation and ``_{split}`` for a
    split other than test."""
    return args.run.figure_prefix(evaluated_name(args), args.split)


def save(fig, path):
    """Save ``fig`` at DPI, close it, print and return its path."""
    save_figure(fig, path, dpi=DPI)
    plt.close(fig)
    print(f"wrote {path}")
    return Path(path)


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


def denormalize(images, normalization):
    """Normalized B x 3 x H x W images back to B x H x W x 3 uint8 pixels."""
    mean, std = (torch.tensor(v, device=images.device).view(1, -1, 1, 1) for v in normalization)
    pixels = (images * std + mean).clamp(0, 1) * 255
    return pixels.round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def model_device(model):
    return next(model.parameters()).device
