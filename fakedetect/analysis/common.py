"""What the analyses share: loading the run the flags name (JSON, checkpoint, evaluated split) with
one-line errors, the figure style and saving, and the mean-map figure of both explanations. File names
come from io/runs.py; the flags themselves are cli/analysis_common.py's."""
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from fakedetect.data.cache import drop_unreadable
from fakedetect.data.folders import FacesDataset, dataset_name, dataset_not_found, find_dataset
from fakedetect.io.files import save_figure
from fakedetect.io.runs import model_file_name, read_history
from fakedetect.models.registry import load_trained_model

DPI = 150
plt.rcParams.update({"font.size": 11, "axes.titlesize": 12, "axes.labelsize": 11, "legend.fontsize": 10,
                     "xtick.labelsize": 10, "ytick.labelsize": 10, "figure.titlesize": 13})


class AnalysisError(RuntimeError):
    """A missing run file or dataset; the message names it and how to make it."""


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


def plot_mean_maps(result, title, path):
    """Mean normalized map of real and of fake images side by side, and their difference."""
    maps, counts = result["mean_maps"], result["counts"]
    present = [label for label in (0, 1) if maps[label] is not None]
    panels = len(present) + (len(present) == 2)
    fig, axes = plt.subplots(1, panels, figsize=(4.2 * panels, 4.4), squeeze=False, layout="constrained")
    axes = axes[0]
    top = max(float(maps[label].max()) for label in present)
    for ax, label in zip(axes, present):
        shown = ax.imshow(maps[label], cmap="inferno", vmin=0, vmax=top)
        ax.set_title(f"{('real', 'fake')[label]} images (n = {counts[label]})")
    fig.colorbar(shown, ax=axes[:len(present)], shrink=0.8, label="mean normalized map")
    if panels == 3:
        difference = maps[1] - maps[0]
        limit = float(np.abs(difference).max()) or 1.0
        shown = axes[2].imshow(difference, cmap="RdBu_r", vmin=-limit, vmax=limit)
        axes[2].set_title("fake minus real")
        fig.colorbar(shown, ax=axes[2], shrink=0.8, label="difference")
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title)
    return save(fig, path)
