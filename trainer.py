"""The training loop: train / validate / test every epoch, JSON metrics, best-on-validation
checkpoints, and a ``last`` checkpoint that resumes a killed run where it stopped."""
import copy
import math
import os
import platform
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from augment import mixup_batch
from faces_dataset import make_batches
from fileio import CheckpointError, load_checkpoint, save_checkpoint, state_dict_mismatch, write_json
from metrics import binary_metrics, format_metric
from recipe import SYMMETRIC_NORMALIZATION

EPOCH_KEYS = ("train_loss", "train_acc", "val_loss", "val_acc", "val_auc", "val_balanced_acc",
              "test_loss", "test_acc", "test_auc", "test_balanced_acc", "epoch_seconds", "train_images_per_s", "lr")
SELECTION_METRICS = ("val_acc", "val_auc")


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN or infinite loss."""


# Config keys a resumed run may change: where things are and how fast they run, not what is trained.
# (The starting weights, --weights and --no-pretrained, are replaced by the checkpoint's; the normalization they
# chose is compared.)
RESUME_MAY_DIFFER = {"device", "workers", "no_cache", "cache_dir", "strict", "amp", "autocast", "channels_last",
                     "compile", "deterministic", "resume", "overwrite", "checkpoint_interval", "out_dir",
                     "checkpoint_dir", "data_root", "dataset", "dataset_path", "recipe_overrides", "weights",
                     "no_pretrained"}


def setting_flag(key):
    """The train_main.py flag of config ``key`` (``weight_decay`` -> ``--weight-decay``)."""
    special = {"batch_size": "--batch_size", "normalization_mean_std": "the input normalization (mean, std)",
               "data_digest": "data whose file names, labels and sizes digest to"}
    return special.get(key, f"--{key.replace('_', '-')}")


def model_file_name(model_name):
    """``model_name`` as it appears in file names (``timm:resnet18`` -> ``timm-resnet18``)."""
    return model_name.replace(":", "-")


@dataclass
class LoggingParameters:
    """What a run is called: its outputs are named ``{dataset}_{model}_{optimizer}``."""
    model_name: str
    dataset_name: str
    optimizer_name: str
    optimizer_params: dict = field(default_factory=dict)

    @property
    def run_name(self):
        """``{dataset}_{model}_{optimizer}``, with ``:`` in timm model names made safe for file names."""
        return f"{self.dataset_name}_{model_file_name(self.model_name)}_{self.optimizer_name}"


def seed_everything(seed, deterministic=False):
    """Seed Python, NumPy and torch; optionally make torch choose deterministic algorithms
    (cuBLAS included: its workspace setting must come before CUDA starts)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False


def library_versions():
    """Versions of Python and of the libraries that shape a run's results (recorded in its JSON)."""
    import PIL
    import sklearn
    import timm
    import torchvision
    return {"python": platform.python_version(), "torch": str(torch.__version__),
            "torchvision": str(torchvision.__version__), "timm": timm.__version__, "numpy": np.__version__,
            "pillow": PIL.__version__, "scikit-learn": sklearn.__version__}


def output_paths(logging_parameters, out_dir="out", checkpoint_dir="checkpoints"):
    """(metrics JSON, best checkpoint, last checkpoint) paths of a run."""
    name = logging_parameters.run_name
    checkpoint_dir = Path(checkpoint_dir)
    return Path(out_dir) / f"{name}.json", checkpoint_dir / f"{name}.pt", checkpoint_dir / f"{name}_last.pt"


class WeightAverage:
    """An exponential moving average of a model's weights and buffers, updated after every
    optimizer step: ``average = d_t * average + (1 - d_t) * model`` with the warm-up
    ``d_t = min(decay, 1 - (1 + t) ** -0.75)`` at step t (timm's ModelEmaV3 warm-up), so that
    the first steps are not averaged with the random initialization and short runs average over
    their own length. ``module`` is the averaged model, always in eval mode."""

    def __init__(self, model, decay):
        self.module = copy.deepcopy(model).eval().requires_grad_(False)
        self.decay = decay

    def decay_at(self, step):
        """The decay applied after optimizer step ``step`` (0-based)."""
        return min(self.decay, 1 - (1 + step) ** -0.75)

    @torch.no_grad()
    def update(self, model, step):
        """Fold ``model``'s weights after optimizer step ``step`` (0-based) into the average."""
        decay = self.decay_at(step)
        for average, current in zip(self.module.state_dict().values(), model.state_dict().values()):
            if average.is_floating_point():
                average.lerp_(current, 1 - decay)
            else:
                average.copy_(current)


class Trainer:
    """Trains ``model`` on the train split and evaluates it on validation and test each epoch.

    The datasets are ``FacesDataset`` (per-item PIL path) or ``DecodedFaces`` (decoded
    cache, augmented in bulk on the device); see ``faces_dataset.make_batches``.
    Accuracies and the validation and test losses are exact per-sample means; the validation and
    test loss is plain cross-entropy whatever the training ``criterion`` (smoothed or weighted), so
    runs compare; the training loss is the mean over batches (weighted by batch size) of the
    ``criterion`` itself. On CUDA,
    ``autocast_dtype`` (e.g. torch.bfloat16) and ``channels_last`` speed up large models; on
    the CPU leave them off.

    Recipe options: ``scheduler`` (stepped after every optimizer step, saved for resume),
    ``clip_grad_norm`` (max global gradient norm, 0 = off), ``patience`` (stop after that many
    epochs without a better ``selection_metric``, 0 = off), ``augment`` (an
    augment.AugmentConfig for training batches), ``sample_weights`` (per training image,
    drawn with replacement, e.g. faces_dataset.balanced_sample_weights), ``mixup`` (the
    Beta(alpha, alpha) parameter of augment.mixup_batch, 0 = off; the training accuracy is then
    counted against each image's own, unmixed label) and ``ema_decay`` (0 = off: else validation,
    test and the best checkpoint use a WeightAverage of the weights with that decay).

    ``checkpoint_interval`` (default 0 = after every epoch): the resume checkpoint
    (``{run}_last.pt``, with the optimizer state) is written at the end of the first epoch that
    finishes at least that many seconds after its last write, at every new best epoch and at the
    end. Short GPU epochs otherwise spend much of their time writing it; a killed run then redoes
    up to that many seconds plus the epoch in progress.
    """

    def __init__(self, model, optimizer, criterion, batch_size, train_dataset, validation_dataset, test_dataset,
                 device="cpu", normalization=SYMMETRIC_NORMALIZATION, autocast_dtype=None, channels_last=False,
                 compile_model=False, workers=0, seed=0, selection_metric="val_acc",
                 out_dir="out", checkpoint_dir="checkpoints", config=None, progress=True,
                 scheduler=None, clip_grad_norm=0.0, patience=0, augment=None, sample_weights=None, mixup=0.0,
                 ema_decay=0.0, checkpoint_interval=0.0):
        if selection_metric not in SELECTION_METRICS:
            raise ValueError(f"selection_metric must be one of {SELECTION_METRICS}")
        self.device = torch.device(device)
        memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.model = model.to(self.device, memory_format=memory_format)
        self.forward = torch.compile(self.model) if compile_model else self.model
        self.average = WeightAverage(self.model, ema_decay) if ema_decay else None
        self.optimizer, self.criterion, self.batch_size = optimizer, criterion.to(self.device), batch_size
        self.scheduler, self.clip_grad_norm, self.patience = scheduler, clip_grad_norm, patience
        self.mixup, self.checkpoint_interval = mixup, checkpoint_interval
        self.train_dataset, self.validation_dataset, self.test_dataset = train_dataset, validation_dataset, test_dataset
        self.autocast_dtype, self.normalization = autocast_dtype, normalization
        self.selection_metric, self.out_dir, self.checkpoint_dir = selection_metric, out_dir, checkpoint_dir
        self.config, self.progress = dict(config or {}), progress
        self.generator = torch.Generator().manual_seed(seed)  # training order and augmentations; saved for resume
        self.eval_generator = torch.Generator().manual_seed(seed)  # evaluation draws nothing from the training stream
        mean, std = normalization
        self.train_batches = make_batches(train_dataset, batch_size, self.device, mean, std, True,
                                          self.generator, workers, channels_last, augment, sample_weights)
        self.eval_batches = {
            id(dataset): make_batches(dataset, 2 * batch_size, self.device, mean, std, False,
                                      self.eval_generator, workers, channels_last)
            for dataset in (validation_dataset, test_dataset)}
        self.epoch, self.steps, self.history, self.best = 0, 0, None, None

    def _autocast(self):
        return torch.autocast(self.device.type, dtype=self.autocast_dtype or torch.float32,
                              enabled=self.autocast_dtype is not None)

    def train_one_epoch(self):
        """Train for one epoch; returns (average loss, accuracy) over the training samples."""
        self.model.train()
        loss_sum = torch.zeros((), device=self.device)
        correct = torch.zeros((), dtype=torch.int64, device=self.device)
        first_bad_step = torch.full((), -1, dtype=torch.int64, device=self.device)
        count = 0
        for step, (images, labels) in enumerate(tqdm(self.train_batches, desc=f"epoch {self.epoch} train",
                                                     leave=False, disable=not self.progress)):
            if self.mixup:
                images, partner_labels, lam = mixup_batch(images, labels, self.mixup, self.generator)
            with self._autocast():
                logits = self.forward(images).float()
            loss = self.criterion(logits, labels)
            if self.mixup:
                loss = lam * loss + (1 - lam) * self.criterion(logits, partner_labels)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if self.clip_grad_norm:
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.clip_grad_norm)
            self.optimizer.step()
            if self.scheduler is not None:
                self.scheduler.step()
            if self.average is not None:
                self.average.update(self.model, self.steps)
            self.steps += 1
            loss = loss.detach()
            first_bad_step = torch.where((first_bad_step < 0) & ~torch.isfinite(loss), step, first_bad_step)
            loss_sum += loss * len(labels)
            correct += (logits.detach().argmax(1) == labels).sum()
            count += len(labels)
        if first_bad_step.item() >= 0:
            raise NonFiniteLossError(f"non-finite training loss at epoch {self.epoch}, step {first_bad_step.item()} "
                                     "(learning rate too high?); the last good checkpoints are kept")
        return loss_sum.item() / count, correct.item() / count

    @torch.inference_mode()
    def evaluate(self, dataset):
        """Loss, accuracy, AUC, balanced accuracy and the fake-class probabilities on ``dataset``
        (of the weight average when there is one)."""
        self.model.eval()
        forward = self.average.module if self.average is not None else self.forward
        batches = self.eval_batches.get(id(dataset))
        if batches is None:
            mean, std = self.normalization
            batches = make_batches(dataset, 2 * self.batch_size, self.device, mean, std, False, self.eval_generator)
        loss_sum = torch.zeros((), device=self.device)
        scores, labels_seen = [], []
        for images, labels in batches:
            with self._autocast():
                logits = forward(images).float()
            loss_sum += torch.nn.functional.cross_entropy(logits, labels, reduction="sum")
            scores.append(torch.softmax(logits, 1)[:, 1])
            labels_seen.append(labels)
        scores = torch.cat(scores).cpu().numpy()
        labels = torch.cat(labels_seen).cpu().numpy()
        result = binary_metrics(labels, scores)
        result["loss"] = loss_sum.item() / len(labels)
        result["scores"], result["labels"] = scores, labels
        return result

    def evaluate_model_on_dataloader(self, dataset):
        """(average loss, accuracy) of the model on ``dataset``."""
        result = self.evaluate(dataset)
        return result["loss"], result["accuracy"]

    def validate(self):
        """(average loss, accuracy) on the validation split."""
        return self.evaluate_model_on_dataloader(self.validation_dataset)

    def test(self):
        """(average loss, accuracy) on the test split."""
        return self.evaluate_model_on_dataloader(self.test_dataset)

    def _state(self, history, best):
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(), "epoch": self.epoch,
                "steps": self.steps,
                "history": history, "best": best, "generator": self.generator.get_state(),
                "torch_rng": torch.get_rng_state(),
                "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
                "config": self.config,
                "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
                "average": self.average.module.state_dict() if self.average is not None else None}

    def _resume(self, last_path, logging_parameters):
        new_run = "start a new run instead (--overwrite, or another --out-dir/--checkpoint-dir)"
        state = load_checkpoint(last_path, required_keys=("model", "optimizer", "epoch", "history", "best",
                                                          "generator", "torch_rng", "cuda_rng"), fix=new_run)
        if state["history"].get("model") != logging_parameters.model_name:
            raise CheckpointError(f"{last_path}: holds a {state['history'].get('model')} run, "
                                  f"not {logging_parameters.model_name}; resume with the same -m")
        saved_config = state["history"].get("config") or {}
        changed = [f"{setting_flag(key)} {saved_config[key]} (now {self.config[key]})"
                   for key in sorted(saved_config.keys() & self.config.keys() - RESUME_MAY_DIFFER)
                   if saved_config[key] != self.config[key]]
        if changed:
            raise CheckpointError(f"{last_path}: holds a run with {', '.join(changed)}; resume with the run's own "
                                  "settings, or start a new run (--overwrite, or another --out-dir/--checkpoint-dir)")
        try:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            if self.scheduler is not None and state.get("scheduler") is not None:
                self.scheduler.load_state_dict(state["scheduler"])
            if self.average is not None:
                self.average.module.load_state_dict(state.get("average") or state["model"])
            self.generator.set_state(state["generator"])
            torch.set_rng_state(state["torch_rng"])
            if state["cuda_rng"] and torch.cuda.is_available():  # this machine may have fewer GPUs
                for index, cuda_state in enumerate(state["cuda_rng"][:torch.cuda.device_count()]):
                    torch.cuda.set_rng_state(cuda_state, index)
        except (RuntimeError, ValueError, KeyError, TypeError) as error:
            raise CheckpointError(f"{last_path}: its saved state does not fit this run "
                                  f"({state_dict_mismatch(error)}); {new_run}") from None
        self.epoch = state["epoch"]
        self.steps = state.get("steps", self.epoch * len(self.train_batches))
        return state["history"], state["best"]

    def _resume_record(self):
        """What the JSON notes of a resume: after which epoch, the settings it was free to change and did
        (device, workers, ...), and the library versions it continued with."""
        first = self.history.get("config") or {}
        free = RESUME_MAY_DIFFER & self.config.keys() - {"resume", "overwrite"}
        changed = {key: self.config[key] for key in sorted(free) if first.get(key) != self.config[key]}
        return {"after_epoch": self.epoch, "changed": changed, "versions": library_versions()}

    def _warn_if_the_best_checkpoint_disagrees(self, best_path):
        """Warn when the best checkpoint is not of the resumed run's best epoch, or cannot be read.
        A run killed between writing the best and the last checkpoint leaves a best checkpoint of an
        epoch the resume redoes; redone exactly (CPU, --deterministic) it is written again, else it
        may not be, and it would disagree with the JSON's best_epoch unnoticed."""
        if not best_path.exists():
            return
        try:
            best_epoch = load_checkpoint(best_path, required_keys=("epoch",),
                                         fix="it is written again at the next best epoch")["epoch"]
        except CheckpointError as error:
            print(f"warning: {error}")
            return
        if best_epoch == self.best["epoch"]:
            return
        why = ("which this resume redoes (the run was killed between writing its two checkpoints)"
               if best_epoch is not None and best_epoch > self.epoch else "not the run's best")
        print(f"warning: {best_path} holds epoch {best_epoch}, {why}; the JSON's best epoch is "
              f"{self.best['epoch']} until a later epoch beats it and replaces the file")

    def run(self, epochs, logging_parameters, resume=False):
        """Train until ``epochs`` epochs are done; returns the history written to the JSON.

        After every epoch the JSON (``out/{run}.json``) is rewritten atomically, and so is
        ``checkpoints/{run}_last.pt`` at the epochs ``checkpoint_interval`` says;
        ``checkpoints/{run}.pt`` holds the epoch with the best ``selection_metric`` (validation
        only; ties keep the earlier epoch). With ``resume`` the run continues from the last
        checkpoint and its history (epochs the JSON holds beyond it are redone); calling ``run`` again on
        the same trainer continues in memory. With ``patience`` the run stops early (recorded
        as ``stopped_early`` in the JSON) once that many epochs passed without a better
        ``selection_metric``; the best checkpoint stays the best epoch's.
        """
        json_path, best_path, last_path = output_paths(logging_parameters, self.out_dir, self.checkpoint_dir)
        for path in (json_path, best_path, last_path):
            for stale in path.parent.glob(f".{path.name}.*.tmp"):
                stale.unlink()  # left by a run killed while writing
        if resume and last_path.exists():
            self.history, self.best = self._resume(last_path, logging_parameters)
            self.history.setdefault("resumes", []).append(self._resume_record())
            write_json(json_path, self.history)  # drops the epochs the JSON holds beyond the checkpoint
            print(f"resuming {logging_parameters.run_name} after epoch {self.epoch}")
            self._warn_if_the_best_checkpoint_disagrees(best_path)
        elif self.history is None:
            if resume:
                print(f"no last checkpoint of {logging_parameters.run_name} to resume ({last_path}); starting at epoch 1")
            last_path.unlink(missing_ok=True)  # an overwritten run's: never resume into it
            self.history = {"model": logging_parameters.model_name, "dataset": logging_parameters.dataset_name,
                            "optimizer": {"name": logging_parameters.optimizer_name,
                                          "params": logging_parameters.optimizer_params},
                            **{key: [] for key in EPOCH_KEYS}, "best_epoch": None,
                            "selection_metric": self.selection_metric, "stopped_early": None, "config": self.config,
                            "versions": library_versions()}
            self.best = {"value": -math.inf, "epoch": None}
        history, best = self.history, self.best
        last_saved = time.monotonic()
        while self.epoch < epochs and not history.get("stopped_early"):
            self.epoch += 1
            start = time.perf_counter()
            train_loss, train_acc = self.train_one_epoch()
            train_seconds = time.perf_counter() - start
            val, test = self.evaluate(self.validation_dataset), self.evaluate(self.test_dataset)
            epoch_record = {"train_loss": train_loss, "train_acc": train_acc,
                            "val_loss": val["loss"], "val_acc": val["accuracy"], "val_auc": val["auc"],
                            "val_balanced_acc": val["balanced_accuracy"],
                            "test_loss": test["loss"], "test_acc": test["accuracy"], "test_auc": test["auc"],
                            "test_balanced_acc": test["balanced_accuracy"],
                            "epoch_seconds": time.perf_counter() - start,
                            "train_images_per_s": len(self.train_dataset) / train_seconds,
                            "lr": self.optimizer.param_groups[0]["lr"]}
            for key in EPOCH_KEYS:
                history.setdefault(key, []).append(epoch_record[key])
            value = epoch_record[self.selection_metric]
            improved = value is not None and value > best["value"]
            if improved:
                best.update(value=value, epoch=self.epoch)
                evaluated = self.average.module if self.average is not None else self.model
                save_checkpoint(best_path, {"model": evaluated.state_dict(), "model_name": logging_parameters.model_name,
                                            "dataset": logging_parameters.dataset_name, "epoch": self.epoch,
                                            "val_acc": val["accuracy"], "val_auc": val["auc"],
                                            "threshold": val["eer_threshold"],  # None: undefined (one class)
                                            "normalization": list(self.normalization), "config": self.config})
            history["best_epoch"] = best["epoch"]
            if self.patience and best["epoch"] is not None and self.epoch - best["epoch"] >= self.patience:
                history["stopped_early"] = self.epoch
            if (improved or self.epoch == epochs or history.get("stopped_early")
                    or time.monotonic() - last_saved >= self.checkpoint_interval):
                save_checkpoint(last_path, self._state(history, best))  # of the best epoch too, right after it
                last_saved = time.monotonic()
            write_json(json_path, history)
            print(format_epoch(self.epoch, epochs, epoch_record))
        if history.get("stopped_early"):
            print(f"stopped early after epoch {history['stopped_early']}: no better {self.selection_metric} "
                  f"for {self.patience} epochs (best: epoch {best['epoch']})")
        return history


def format_epoch(epoch, epochs, record):
    """The one-line progress report of an epoch."""
    auc, test_auc = format_metric(record["val_auc"], "  n/a"), format_metric(record["test_auc"], "  n/a")
    balanced = format_metric(record["test_balanced_acc"], "  n/a")
    return (f"epoch {epoch}/{epochs}: train loss {record['train_loss']:.4f} acc {record['train_acc']:.3f} | "
            f"val loss {record['val_loss']:.4f} acc {record['val_acc']:.3f} auc {auc} | "
            f"test acc {record['test_acc']:.3f} auc {test_auc} bal.acc {balanced} | {record['epoch_seconds']:.1f}s "
            f"({record['train_images_per_s']:.0f} img/s)")


def format_history_table(history):
    """The per-epoch results of a run as a Markdown table (best-on-validation epoch starred)."""
    lines = ["| epoch | train loss | train acc | val acc | val AUC | test acc | test AUC | test bal. acc | seconds |",
             "|---|---|---|---|---|---|---|---|---|"]
    for index in range(len(history["train_loss"])):
        star = "*" if history["best_epoch"] == index + 1 else ""
        metrics = " | ".join(format_metric(history[key][index]) for key in (
            "train_acc", "val_acc", "val_auc", "test_acc", "test_auc", "test_balanced_acc"))
        lines.append(f"| {index + 1}{star} | {history['train_loss'][index]:.4f} | {metrics} | "
                     f"{history['epoch_seconds'][index]:.1f} |")
    return "\n".join(lines)
