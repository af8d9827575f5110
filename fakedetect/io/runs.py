"""What a run is called and what it writes, defined once: the run name, every path of a run,
the metrics JSON and checkpoint layouts (each with a ``format_version``), the operating threshold,
and the lock a running run holds on its name (the rules a resume must pass: config.resume).

A run's name is ``--run-name``, by default ``{dataset}_{model}_{optimizer}`` (``:`` in timm
model names written ``-``). Its files: ``{out_dir}/{name}.json`` (metrics), ``{out_dir}/{name}.yaml``
(its config), ``{checkpoint_dir}/{name}.pt`` (best epoch on validation), ``{name}_last.pt`` (for
--resume) and, while it runs, ``.{name}.lock``. Files written before ``format_version`` existed are
version 1 and still load.
"""
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch

from fakedetect.io.files import CheckpointError, held_lock, load_checkpoint, read_json

FORMAT_VERSION = 2
EPOCH_KEYS = ("train_loss", "train_acc", "val_loss", "val_acc", "val_auc", "val_balanced_acc",
              "test_loss", "test_acc", "test_auc", "test_balanced_acc", "epoch_seconds", "train_images_per_s", "lr")
RESUME_KEYS = ("model", "optimizer", "epoch", "history", "best", "generator", "torch_rng", "cuda_rng")
NEW_RUN = "start a new run instead (--overwrite, or another --run-name)"
RUN_NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+=-]*")


class RunLockedError(RuntimeError):
    """Another process is running a run of the same name."""


def model_file_name(model_name):
    """``model_name`` as it appears in file names (``timm:resnet18`` -> ``timm-resnet18``)."""
    return model_name.replace(":", "-")


def default_run_name(dataset, model, optimizer):
    return f"{dataset}_{model_file_name(model)}_{optimizer}"


def run_name_problem(name):
    """Why ``name`` cannot name a run's files (one phrase), or None."""
    if not RUN_NAME_PATTERN.fullmatch(name):
        return "use letters, digits and . _ - @ + = only, starting with a letter or digit"
    return "it ends in _last, which the resume checkpoint adds" if name.endswith("_last") else None


@dataclass(frozen=True)
class Run:
    """A run: what it trains (model, dataset name, optimizer and its settings), its name and its folders."""
    model: str
    dataset: str
    optimizer: str
    optimizer_params: dict = field(default_factory=dict)
    name: str = None  # None: default_run_name
    out_dir: Path = Path("out")
    checkpoint_dir: Path = Path("checkpoints")

    def __post_init__(self):
        object.__setattr__(self, "name", self.name or default_run_name(self.dataset, self.model, self.optimizer))
        object.__setattr__(self, "out_dir", Path(self.out_dir))
        object.__setattr__(self, "checkpoint_dir", Path(self.checkpoint_dir))

    @property
    def json_path(self):
        return self.out_dir / f"{self.name}.json"

    @property
    def config_path(self):
        """The run's full config as YAML (``train_main.py --config`` reads it back)."""
        return self.out_dir / f"{self.name}.yaml"

    @property
    def tensorboard_dir(self):
        """Where ``--tensorboard`` without a folder writes the run's events."""
        return self.out_dir / "tb" / self.name

    @property
    def best_path(self):
        return self.checkpoint_dir / f"{self.name}.pt"

    @property
    def last_path(self):
        return self.checkpoint_dir / f"{self.name}_last.pt"

    @property
    def lock_path(self):
        return self.checkpoint_dir / f".{self.name}.lock"

    @property
    def files(self):
        """(metrics JSON, best checkpoint, last checkpoint)."""
        return self.json_path, self.best_path, self.last_path

    def figure_prefix(self, evaluated_dataset=None, split="test"):
        """The run's name, plus ``_on_{dataset}`` for a cross-dataset evaluation and ``_{split}`` off test."""
        prefix = self.name
        if evaluated_dataset and evaluated_dataset != self.dataset:
            prefix += f"_on_{evaluated_dataset}"
        return prefix if split == "test" else f"{prefix}_{split}"

    def lock(self):
        """Hold the run's name while it runs (a context manager); RunLockedError naming the holder
        when another live process holds it. A lock left by a dead process on this host is taken over."""
        return held_lock(self.lock_path, lambda holder: RunLockedError(
            f"run {self.name} is already running ({holder}; lock {self.lock_path}); "
            "wait for it to end or choose another --run-name"))

    def sweep_temporaries(self):
        """Remove the temporary files of the run's outputs left by a killed run (call it holding the lock)."""
        for path in (*self.files, self.config_path):
            for stale in path.parent.glob(f".{path.name}.*.tmp"):
                stale.unlink(missing_ok=True)


# --- the metrics JSON -------------------------------------------------------------------------------------------

def new_history(run, selection_metric, config, versions):
    """The metrics JSON of a run before its first epoch."""
    return {"format_version": FORMAT_VERSION, "run_name": run.name, "model": run.model, "dataset": run.dataset,
            "optimizer": {"name": run.optimizer, "params": run.optimizer_params},
            **{key: [] for key in EPOCH_KEYS}, "best_epoch": None, "selection_metric": selection_metric,
            "stopped_early": None, "config": config, "versions": versions}


def append_epoch(history, record):
    for key in EPOCH_KEYS:
        history.setdefault(key, []).append(record[key])


def read_history(path, fix):
    """A run's metrics JSON, checked; CheckpointError naming ``path`` and ``fix`` when it is not one."""
    history = read_json(path, "run JSON", fix)
    if not isinstance(history, dict) or not {"model", "dataset", "optimizer", "train_loss"} <= history.keys():
        raise CheckpointError(f"{path}: not a run JSON written by train_main.py; {fix}")
    return history


# --- checkpoints ------------------------------------------------------------------------------------------------

def best_checkpoint(run, model_state, epoch, validation, normalization, config):
    """The detector checkpoint of a run's best epoch (what predict.py and the analysis scripts load)."""
    return {"format_version": FORMAT_VERSION, "model": model_state, "model_name": run.model, "run_name": run.name,
            "dataset": run.dataset, "epoch": epoch, "val_acc": validation["accuracy"], "val_auc": validation["auc"],
            "threshold": validation["eer_threshold"],  # None: undefined (validation held one class)
            "normalization": [list(values) for values in normalization], "config": config}


def check_detector_checkpoint(checkpoint, path, fix):
    """CheckpointError naming ``path`` and ``fix`` unless ``checkpoint`` has a detector checkpoint's keys with
    usable values: weights (a dict of tensors), a model name, a normalization of two 3-number lists and a
    threshold that is None or a finite number in [0, 1]."""
    def refuse(what):
        raise CheckpointError(f"{path}: {what}; {fix}")

    if "model_name" not in checkpoint and {"optimizer", "history"} <= checkpoint.keys():
        best = Path(path).name.replace("_last.pt", ".pt")
        refuse(f"the resume state of a run (for train_main.py --resume), not a detector checkpoint; pass the "
               f"run's best checkpoint ({best})")
    missing = [key for key in ("model", "model_name", "normalization") if key not in checkpoint]
    if missing:
        refuse(f"not a detector checkpoint of this toolkit (no {', '.join(missing)})")
    if not isinstance(checkpoint["model"], dict) or not all(
            isinstance(value, torch.Tensor) for value in checkpoint["model"].values()):
        refuse("its 'model' is not a state dict (names to tensors)")
    if not isinstance(checkpoint["model_name"], str):
        refuse(f"its 'model_name' is {checkpoint['model_name']!r}, not a model name")
    normalization = checkpoint["normalization"]
    if not (isinstance(normalization, (list, tuple)) and len(normalization) == 2 and all(
            isinstance(values, (list, tuple)) and len(values) == 3 and all(
                isinstance(v, (int, float)) and math.isfinite(v) for v in values) for values in normalization)
            and all(v > 0 for v in normalization[1])):
        refuse(f"its 'normalization' is {normalization!r}, not [[3 means], [3 positive stds]]")
    threshold = checkpoint.get("threshold")
    if threshold is not None and not (isinstance(threshold, (int, float)) and not isinstance(threshold, bool)
                                      and math.isfinite(threshold) and 0 <= threshold <= 1):
        refuse(f"its 'threshold' is {threshold!r}, not a number in [0, 1] (or null)")
    epoch = checkpoint.get("epoch")
    if epoch is not None and not (isinstance(epoch, int) and not isinstance(epoch, bool)):
        refuse(f"its 'epoch' is {epoch!r}, not an epoch number")
    return checkpoint


def load_detector_checkpoint(path, fix="pass a .pt file written by train_main.py (train a model first)"):
    """A detector checkpoint, loaded safely and checked (``check_detector_checkpoint``)."""
    checkpoint = load_checkpoint(path, required_keys=(), fix=fix)
    return check_detector_checkpoint(checkpoint, path, fix)


def operating_threshold(checkpoint):
    """The threshold on P(fake) a checkpoint decides at: its validation EER threshold, or 0.5
    when it has none (the validation split held one class)."""
    threshold = checkpoint.get("threshold")
    return 0.5 if threshold is None else float(threshold)
