"""The training loop: train / validate / test every epoch, JSON metrics, best-on-validation
checkpoints, and a ``last`` checkpoint that resumes a killed run where it stopped."""
import contextlib
import copy
import math
import os
import platform
import random
import time
from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from fakedetect.config.recipe import Recipe
from fakedetect.config.resume import load_resume_state, resume_record
from fakedetect.data.augment import AugmentConfig, mixup_batch
from fakedetect.data.batches import SINGLE, Ranks, balanced_sample_weights, make_batches
from fakedetect.data.normalization import SYMMETRIC_NORMALIZATION
from fakedetect.data.self_blend import EpochBlends, SelfBlendConfig
from fakedetect.io import runs
from fakedetect.io.files import CheckpointError, load_checkpoint, save_checkpoint, state_dict_mismatch, write_json
from fakedetect.metrics import binary_metrics, format_metric
from fakedetect.train.distributed import gather_parts, sum_over_ranks
from fakedetect.train.optim import build_optimizer, build_scheduler, class_weights


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN or infinite loss."""


def mask_loss(mask_logits, masks, target="blend"):
    """Binary cross-entropy of the mask head's logits (B x 1 x h x w) against the images' manipulation masks
    (B x 1 x H x W in [0, 1]; NaN for an image whose mask is unknown, which is left out), averaged down to
    the head's resolution; ``target`` "boundary" asks for Face X-ray's blending boundary 4M(1-M) instead of
    the mask M. 0 (with a gradient) when no mask of the batch is known."""
    if target == "boundary":
        masks = 4 * masks * (1 - masks)
    pooled = torch.nn.functional.adaptive_avg_pool2d(masks, mask_logits.shape[-2:])
    known = ~pooled.isnan().flatten(1).any(1)
    if not known.any():
        return mask_logits.sum() * 0
    return torch.nn.functional.binary_cross_entropy_with_logits(mask_logits[known], pooled[known])


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


@dataclass
class Runtime:
    """Where and how fast a run trains, never what it learns: a resume may change these."""
    device: str = "cpu"
    autocast_dtype: torch.dtype = None  # e.g. torch.bfloat16 on CUDA; off on the CPU, where it is slow
    channels_last: bool = False
    compile: bool = False
    workers: int = 0  # DataLoader workers of the per-item path
    seed: int = 0
    checkpoint_interval: float = 0.0  # seconds between writes of the last checkpoint (0 = every epoch)
    progress: bool = True
    ranks: Ranks = SINGLE  # the processes torchrun started (train/distributed.py); rank 0 writes
    sync_bn: bool = False  # BatchNorm statistics over the global batch (CUDA only) when ranks.world > 1


class Trainer:
    """Trains ``model`` on the train split of ``splits`` (train, validation, test) with ``recipe``
    and evaluates it on validation and test each epoch; writes the files of ``run`` (io.runs.Run).

    The recipe builds the optimizer, the learning-rate schedule (stepped after every optimizer
    step), the loss (label smoothing, class weights), the sampler (class balance), the training
    augmentations, mixup, gradient clipping, early stopping (``patience`` epochs without a better
    ``selection_metric``) and the weight average (``ema``: validation, test and the best checkpoint
    then use a WeightAverage of the weights). The splits are ``FacesDataset`` (per-item PIL path)
    or ``DecodedFaces`` (decoded cache, augmented in bulk on the device); see
    ``data.batches.make_batches``. ``normalization`` is the input (mean, std). An optional
    ``logger`` (tensorboard_log.TensorBoardLogger) gets ``step(step, loss, lr)`` after every
    optimizer step and ``epoch(trainer, record, improved)`` after every epoch.

    Accuracies and the validation and test losses are exact per-sample means; the validation and
    test loss is plain cross-entropy whatever the training loss (smoothed or weighted), so runs
    compare; the training loss is the mean over batches (weighted by batch size) of the loss itself.

    The resume checkpoint (``{run}_last.pt``, with the optimizer state) is written at the end of
    the first epoch that finishes at least ``runtime.checkpoint_interval`` seconds after its last
    write, at every new best epoch and at the end; a killed run redoes up to that many seconds
    plus the epoch in progress.
    """

    def __init__(self, model, splits, run, recipe=Recipe(), runtime=Runtime(), normalization=SYMMETRIC_NORMALIZATION,
                 config=None, logger=None):
        self.train_dataset, self.validation_dataset, self.test_dataset = splits
        self.run_files, self.recipe, self.runtime, self.normalization = run, recipe, runtime, normalization
        self.config = dict(config or {})
        self.logger = logger  # e.g. tensorboard_log.TensorBoardLogger: step(...) every step, epoch(...) every epoch
        self.device = torch.device(runtime.device)
        memory_format = torch.channels_last if runtime.channels_last else torch.contiguous_format
        self.ranks = runtime.ranks
        self.model = model.to(self.device, memory_format=memory_format)
        trained = self.model
        if self.ranks.world > 1:
            from torch.nn.parallel import DistributedDataParallel
            if runtime.sync_bn:
                self.model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
            trained = DistributedDataParallel(self.model,
                                              device_ids=[self.device] if self.device.type == "cuda" else None)
        self.forward = torch.compile(trained) if runtime.compile else trained
        self.evaluated = self.forward if self.ranks.world == 1 else self.model  # evaluation syncs nothing per batch
        self.average = WeightAverage(self.model, recipe.ema) if recipe.ema else None
        self.optimizer = build_optimizer(recipe.optimizer, self.model.parameters(), recipe.lr, recipe.momentum,
                                         recipe.weight_decay)
        labels = self.train_dataset.labels
        self.self_blend = EpochBlends(recipe.self_blend, labels, getattr(self.train_dataset, "landmarks", None),
                                      runtime.seed, SelfBlendConfig(mask=recipe.self_blend_mask),
                                      pairs=recipe.self_blend_pairs) if recipe.self_blend else None
        counts = self.self_blend.expected_class_counts() if self.self_blend else None
        loss_weights = class_weights(labels, counts) if recipe.class_balance == "weights" else None
        self.criterion = torch.nn.CrossEntropyLoss(weight=loss_weights, label_smoothing=recipe.label_smoothing)
        self.criterion.to(self.device)
        sample_weights = balanced_sample_weights(labels) if recipe.class_balance == "sampler" else None
        self.generator = torch.Generator().manual_seed(runtime.seed)  # training order and augmentations; saved
        self.eval_generator = torch.Generator().manual_seed(runtime.seed)  # evaluation draws nothing from it
        mean, std = normalization
        self.train_batches = make_batches(self.train_dataset, recipe.batch_size, self.device, mean, std, True,
                                          self.generator, runtime.workers, runtime.channels_last,
                                          AugmentConfig.from_recipe(recipe), sample_weights, self.self_blend,
                                          self.ranks, with_masks=recipe.mask_loss > 0)
        steps_per_epoch = len(self.train_batches)
        self.scheduler = build_scheduler(self.optimizer, recipe.schedule, recipe.epochs * steps_per_epoch,
                                         round(recipe.warmup_epochs * steps_per_epoch))
        self.eval_batches = {
            id(dataset): make_batches(dataset, 2 * recipe.batch_size, self.device, mean, std, False,
                                      self.eval_generator, runtime.workers, runtime.channels_last, ranks=self.ranks)
            for dataset in (self.validation_dataset, self.test_dataset)}
        self.epoch, self.steps, self.history, self.best = 0, 0, None, None
        self.last_saved = time.monotonic()

    def _autocast(self):
        dtype = self.runtime.autocast_dtype
        return torch.autocast(self.device.type, dtype=dtype or torch.float32, enabled=dtype is not None)

    # --- the steps of a run, in order -------------------------------------------------------------------------

    def run(self, epochs=None, resume=False):
        """Train until ``epochs`` (default: the recipe's) epochs are done; returns the history written to the JSON.

        After every epoch the JSON is rewritten atomically, and so is the last checkpoint at the
        epochs ``checkpoint_interval`` says; the best checkpoint holds the epoch with the best
        ``selection_metric`` (validation only; ties keep the earlier epoch). With ``resume`` the run
        continues from the last checkpoint and its history (epochs the JSON holds beyond it are
        redone); calling ``run`` again on the same trainer continues in memory. With ``patience``
        the run stops early (``stopped_early`` in the JSON); the best checkpoint stays the best epoch's.
        Holds the run's lock while it runs.
        """
        epochs = epochs or self.recipe.epochs
        with self.run_files.lock() if self.ranks.main else contextlib.nullcontext():
            if self.ranks.main:
                self.run_files.sweep_temporaries()
            self.prepare(resume)
            while self.epoch < epochs and not self.history.get("stopped_early"):
                record, validation = self.train_and_evaluate_one_epoch()
                improved = self.record_epoch(record)
                if self.logger is not None:
                    self.logger.epoch(self, record, improved)
                if self.ranks.main:
                    self.write_checkpoints(validation, improved, epochs)
                    write_json(self.run_files.json_path, self.history)
                    print(format_epoch(self.epoch, epochs, record))
        if self.history.get("stopped_early"):
            print(f"stopped early after epoch {self.history['stopped_early']}: no better {self.recipe.selection_metric} "
                  f"for {self.recipe.patience} epochs (best: epoch {self.best['epoch']})")
        return self.history

    def prepare(self, resume):
        """Start the history, or continue it: from the last checkpoint with ``resume``, from memory
        when this trainer ran before."""
        run = self.run_files
        if resume and run.last_path.exists():
            self.restore(load_resume_state(run, self.config))
            self.history.setdefault("resumes", []).append(
                resume_record(self.history, self.config, self.epoch, library_versions()))
            if self.ranks.main:
                write_json(run.json_path, self.history)  # drops the epochs the JSON holds beyond the checkpoint
                print(f"resuming {run.name} after epoch {self.epoch}")
                self._warn_if_the_best_checkpoint_disagrees()
        elif self.history is None:
            if self.ranks.main:
                if resume:
                    print(f"no last checkpoint of {run.name} to resume ({run.last_path}); starting at epoch 1")
                run.last_path.unlink(missing_ok=True)  # an overwritten run's: never resume into it
            self.history = runs.new_history(run, self.recipe.selection_metric, self.config, library_versions())
            self.best = {"value": -math.inf, "epoch": None}
        self.last_saved = time.monotonic()

    def train_and_evaluate_one_epoch(self):
        """(the epoch's record, the validation result)."""
        self.epoch += 1
        start = time.perf_counter()
        train_loss, train_acc = self.train_one_epoch()
        train_seconds = time.perf_counter() - start
        val, test = self.evaluate(self.validation_dataset), self.evaluate(self.test_dataset)
        self.evaluations = {"val": val, "test": test}  # the last epoch's scores, for the logger
        record = {"train_loss": train_loss, "train_acc": train_acc,
                  "val_loss": val["loss"], "val_acc": val["accuracy"], "val_auc": val["auc"],
                  "val_balanced_acc": val["balanced_accuracy"],
                  "test_loss": test["loss"], "test_acc": test["accuracy"], "test_auc": test["auc"],
                  "test_balanced_acc": test["balanced_accuracy"],
                  "epoch_seconds": time.perf_counter() - start,
                  "train_images_per_s": len(self.train_dataset) / train_seconds,
                  "lr": self.optimizer.param_groups[0]["lr"]}
        return record, val

    def record_epoch(self, record):
        """Add the epoch to the history, update the best epoch and early stopping; whether it is a new best."""
        runs.append_epoch(self.history, record)
        value = record[self.recipe.selection_metric]
        improved = value is not None and value > self.best["value"]
        if improved:
            self.best.update(value=value, epoch=self.epoch)
        self.history["best_epoch"] = self.best["epoch"]
        patience, best_epoch = self.recipe.patience, self.best["epoch"]
        if patience and best_epoch is not None and self.epoch - best_epoch >= patience:
            self.history["stopped_early"] = self.epoch
        return improved

    def write_checkpoints(self, validation, improved, epochs):
        """The best checkpoint at a new best epoch; the last one when it is due (always right after a best)."""
        run = self.run_files
        if improved:
            evaluated = self.average.module if self.average is not None else self.model
            save_checkpoint(run.best_path, runs.best_checkpoint(run, evaluated.state_dict(), self.epoch, validation,
                                                                self.normalization, self.config))
        if (improved or self.epoch == epochs or self.history.get("stopped_early")
                or time.monotonic() - self.last_saved >= self.runtime.checkpoint_interval):
            save_checkpoint(run.last_path, self._state())
            self.last_saved = time.monotonic()

    # --- one epoch --------------------------------------------------------------------------------------------

    def train_one_epoch(self):
        """Train for one epoch; returns (average loss, accuracy) over the training samples."""
        self.model.train()
        loss_sum = torch.zeros((), device=self.device)
        correct = torch.zeros((), dtype=torch.int64, device=self.device)
        first_bad_step = torch.full((), -1, dtype=torch.int64, device=self.device)
        count = 0
        mixup = self.recipe.mixup
        # Mixup pairs this rank's images: its draws depend on the batch size, so with several ranks they come
        # from a generator of (seed, rank, epoch), keeping the shared generator the same on every rank.
        mixup_generator = self.generator if self.ranks.world == 1 else torch.Generator().manual_seed(
            hash((self.runtime.seed, self.ranks.rank, self.epoch)) % 2 ** 63)
        self.train_batches.set_epoch(self.epoch)
        for step, (images, labels, *masks) in enumerate(tqdm(self.train_batches, desc=f"epoch {self.epoch} train",
                                                             leave=False, disable=not self.runtime.progress)):
            if mixup:
                images, partner_labels, lam = mixup_batch(images, labels, mixup, mixup_generator)
            with self._autocast():
                if masks:
                    logits, mask_logits = self.forward(images, with_mask=True)
                else:
                    logits = self.forward(images)
            logits = logits.float()
            loss = self.criterion(logits, labels)
            if mixup:
                loss = lam * loss + (1 - lam) * self.criterion(logits, partner_labels)
            if masks:
                loss = loss + self.recipe.mask_loss * mask_loss(mask_logits.float(), masks[0], self.recipe.mask_target)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if self.recipe.clip_grad_norm:
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.recipe.clip_grad_norm)
            self.optimizer.step()
            if self.logger is not None:  # before the scheduler moves on: the rate this step used
                self.logger.step(self.steps, loss.detach(), self.optimizer.param_groups[0]["lr"])
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
        counted = torch.tensor(float(count), dtype=torch.float64, device=self.device)
        bad = (first_bad_step >= 0).double()
        totals = sum_over_ranks(torch.stack([loss_sum.double(), correct.double(), counted, bad]),
                                self.ranks)  # every rank stops on any rank's bad loss
        if totals[3] > 0:
            where = f"step {first_bad_step.item()}" if first_bad_step.item() >= 0 else "another rank's step"
            raise NonFiniteLossError(f"non-finite training loss at epoch {self.epoch}, {where} "
                                     "(learning rate too high?); the last good checkpoints are kept")
        return totals[0].item() / totals[2].item(), totals[1].item() / totals[2].item()

    @torch.inference_mode()
    def evaluate(self, dataset):
        """Loss, accuracy, AUC, balanced accuracy and the fake-class probabilities on ``dataset``
        (of the weight average when there is one)."""
        self.model.eval()
        forward = self.average.module if self.average is not None else self.evaluated
        batches = self.eval_batches.get(id(dataset))
        if batches is None:
            mean, std = self.normalization
            batches = make_batches(dataset, 2 * self.recipe.batch_size, self.device, mean, std, False,
                                   self.eval_generator, ranks=self.ranks)
        loss_sum = torch.zeros((), device=self.device)
        scores, labels_seen = [], []
        for images, labels in batches:
            with self._autocast():
                logits = forward(images).float()
            loss_sum += torch.nn.functional.cross_entropy(logits, labels, reduction="sum")
            scores.append(torch.softmax(logits, 1)[:, 1])
            labels_seen.append(labels)
        scores = torch.cat(scores) if scores else torch.zeros(0, device=self.device)
        labels = torch.cat(labels_seen) if labels_seen else torch.zeros(0, dtype=torch.int64, device=self.device)
        # Each rank scored its block of the split: gathered, they are the split's scores in its order.
        scores, labels = (gather_parts(part, self.ranks, len(dataset)).cpu().numpy() for part in (scores, labels))
        sum_over_ranks(loss_sum, self.ranks)
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

    # --- resume -----------------------------------------------------------------------------------------------

    def _state(self):
        return {"format_version": runs.FORMAT_VERSION, "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(), "epoch": self.epoch, "steps": self.steps,
                "history": self.history, "best": self.best, "generator": self.generator.get_state(),
                "torch_rng": torch.get_rng_state(),
                "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
                "config": self.config,
                "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
                "average": self.average.module.state_dict() if self.average is not None else None}

    def restore(self, state):
        """Continue from a last checkpoint's ``state`` (runs.load_resume_state checked that it is this run's)."""
        try:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            if self.scheduler is not None and state.get("scheduler") is not None:
                self.scheduler.load_state_dict(state["scheduler"])
            if self.average is not None:
                self.average.module.load_state_dict(state.get("average") or state["model"])
            self.generator.set_state(state["generator"])
            if self.self_blend is not None:  # the pseudo-fakes follow the run's own seed, restored with its generator
                self.self_blend.seed = self.generator.initial_seed()
            torch.set_rng_state(state["torch_rng"])
            if state["cuda_rng"] and torch.cuda.is_available():  # this machine may have fewer GPUs
                for index, cuda_state in enumerate(state["cuda_rng"][:torch.cuda.device_count()]):
                    torch.cuda.set_rng_state(cuda_state, index)
        except (RuntimeError, ValueError, KeyError, TypeError) as error:
            raise CheckpointError(f"{self.run_files.last_path}: its saved state does not fit this run "
                                  f"({state_dict_mismatch(error)}); {runs.NEW_RUN}") from None
        self.epoch = state["epoch"]
        self.steps = state.get("steps", self.epoch * len(self.train_batches))
        self.history, self.best = state["history"], state["best"]

    def _warn_if_the_best_checkpoint_disagrees(self):
        """Warn when the best checkpoint is not of the resumed run's best epoch, or cannot be read.
        A run killed between writing the best and the last checkpoint leaves a best checkpoint of an
        epoch the resume redoes; redone exactly (CPU, --deterministic) it is written again, else it
        may not be, and it would disagree with the JSON's best_epoch unnoticed."""
        best_path = self.run_files.best_path
        if not best_path.exists():
            print(f"warning: {best_path} (the best checkpoint, epoch {self.best['epoch']}) is missing; it is written "
                  "again when an epoch beats that one")
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
