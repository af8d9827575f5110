"""Train a real/fake face detector.

    python train_main.py -m SimpleNet -d demo_fakes                  # the improved recipe (default)
    python train_main.py -m SimpleNet -d demo_fakes --recipe course  # the course's recipe exactly
    python train_main.py -m timm:resnet18 -d demo_fakes -e 20        # any timm architecture

A recipe sets the optimizer, learning rate and schedule, batch size, epochs, loss, class
balancing, early stopping, normalization and augmentations; every flag below given on the
command line overrides its recipe value, and the JSON's ``config`` records them all.

``-d`` is a dataset name under ``--data-root`` (default ``data``) or a path; it must hold
``train/``, ``val/`` and ``test/``, each with ``real/`` and ``fake/``. Writes
``out/{dataset}_{model}_{optimizer}.json`` (per-epoch metrics and the run's config),
``checkpoints/{dataset}_{model}_{optimizer}.pt`` (best epoch on validation) and
``..._last.pt`` (everything needed for ``--resume``, written about every
``--checkpoint-interval`` seconds, at every new best epoch and at the end).
"""
import argparse
import hashlib
import math
import sys
import time
from pathlib import Path

import torch

from augment import CROP_MODES, IMAGE_SIZE, MIN_CROP_SIZE, AugmentConfig
from faces_dataset import (SPLITS, DatasetError, FacesDataset, balanced_sample_weights, data_digest, dataset_name,
                           decode_dataset, drop_unreadable, place_images)
from fileio import CheckpointError, WriteError, check_output_path
from models import (PATCH_PREFIX, TIMM_PREFIX, ModelNameError, build_model, has_global_pooling, model_name,
                    precision_settings, resolve_device)
from recipe import (CLASS_BALANCE, DEFAULT_RECIPE, NORMALIZATIONS, OPTIMIZERS, RECIPES, SCHEDULES, build_optimizer,
                    build_scheduler, class_weights, resolve_normalization)
from trainer import (SELECTION_METRICS, LoggingParameters, NonFiniteLossError, Trainer, format_history_table,
                     output_paths, seed_everything)
from xception import WeightsUnavailableError


def from_recipe(key, what):
    """Help text of a recipe-controlled flag: what it does and both recipes' values."""
    return f"{what} (default: improved {RECIPES['improved'][key]}, course {RECIPES['course'][key]})"


class ArgumentParser(argparse.ArgumentParser):
    """argparse without the usage block before an error: one line, the fix in it, exit code 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


def parse_args(argv=None):
    """(checked arguments, LoggingParameters of the run); exits 2 with a one-line fix on bad input."""
    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-m", "--model", default="SimpleNet", type=model_name,
                        help=f"SimpleNet, XceptionBased, {TIMM_PREFIX}ARCH for any timm architecture "
                             f"(e.g. {TIMM_PREFIX}resnet18) with a 2-way head, or {PATCH_PREFIX}ARCH[@STRIDE] for "
                             f"a patch detector: ARCH cut at output stride 8 (or STRIDE), averaging the "
                             f"logits of its patches (default: SimpleNet)")
    parser.add_argument("-d", "--dataset", default="demo_fakes",
                        help="dataset name under --data-root, or a path to a dataset folder (default: demo_fakes)")
    parser.add_argument("--recipe", default=DEFAULT_RECIPE, choices=tuple(RECIPES),
                        help=f"training recipe the flags below default to (default: {DEFAULT_RECIPE})")
    parser.add_argument("-o", "--optimizer", choices=OPTIMIZERS, help=from_recipe("optimizer", "optimizer"))
    parser.add_argument("--lr", type=float, help=from_recipe("lr", "peak learning rate"))
    parser.add_argument("--momentum", type=float, default=0.9, help="SGD momentum (default: 0.9)")
    parser.add_argument("--weight-decay", type=float,
                        help=from_recipe("weight_decay", "AdamW's decoupled weight decay (AdamW only)"))
    parser.add_argument("--schedule", choices=SCHEDULES,
                        help=from_recipe("schedule", "learning rate after warm-up: constant, or cosine decay to 0 "
                                                     "at the last epoch, stepped every iteration"))
    parser.add_argument("--warmup-epochs", type=float,
                        help=from_recipe("warmup_epochs", "epochs of linear learning-rate warm-up"))
    parser.add_argument("-b", "--batch_size", "--batch-size", type=int, help=from_recipe("batch_size", "batch size"))
    parser.add_argument("-e", "--epochs", type=int, help=from_recipe("epochs", "epochs at most"))
    parser.add_argument("--label-smoothing", type=float,
                        help=from_recipe("label_smoothing", "cross-entropy label smoothing"))
    parser.add_argument("--class-balance", choices=CLASS_BALANCE,
                        help=from_recipe("class_balance", "sampler: draw both classes equally often; weights: "
                                                          "weight the loss by inverse class frequency; none"))
    parser.add_argument("--patience", type=int,
                        help=from_recipe("patience", "stop after this many epochs without a better "
                                                     "--selection-metric; 0 = never"))
    parser.add_argument("--clip-grad-norm", type=float,
                        help=from_recipe("clip_grad_norm", "clip the global gradient norm to this; 0 = off"))
    parser.add_argument("--normalization", choices=NORMALIZATIONS,
                        help=from_recipe("normalization", "input mean/std: dataset = training split's statistics, "
                                                          "symmetric = [-1, 1], model = the pretrained backbone's "
                                                          "own, cifar10 = the course's constants, auto = model "
                                                          "with pretrained weights, else dataset"))
    parser.add_argument("--crop", choices=CROP_MODES,
                        help=from_recipe("crop", "training crop: pad = RandomCrop(256, padding=4); native = a "
                                                 "random --crop-size window at native resolution, evaluation on "
                                                 "the whole image (not SimpleNet); resized = RandomResizedCrop(256) "
                                                 "of --crop-scale to all of the area; none"))
    parser.add_argument("--crop-size", type=int, help=from_recipe("crop_size", "window side of --crop native"))
    parser.add_argument("--crop-scale", type=float,
                        help=from_recipe("crop_scale", "smallest window area of --crop resized, as a fraction of "
                                                       "the image"))
    parser.add_argument("--flip", action=argparse.BooleanOptionalAction,
                        help=from_recipe("flip", "random horizontal flip"))
    parser.add_argument("--jitter", type=float,
                        help=from_recipe("jitter", "colour jitter: brightness, contrast, saturation factors in "
                                                   "[1-J, 1+J]; 0 = off"))
    parser.add_argument("--blur-prob", type=float,
                        help=from_recipe("blur_prob", "probability of a Gaussian blur, sigma in [0, 3]"))
    parser.add_argument("--jpeg-prob", type=float,
                        help=from_recipe("jpeg_prob", "probability of JPEG re-compression, quality in 30..100 "
                                                      "(on the CPU)"))
    parser.add_argument("--erase-prob", type=float,
                        help=from_recipe("erase_prob", "probability of random erasing: a rectangle of 2%% to 1/3 "
                                                       "of the image filled with one random colour"))
    parser.add_argument("--mixup", type=float,
                        help=from_recipe("mixup", "mixup alpha: train on pairs of images blended with a "
                                                  "Beta(alpha, alpha) weight and their labels blended alike; 0 = off"))
    parser.add_argument("--drop-path", type=float,
                        help=from_recipe("drop_path", "stochastic depth rate of timm and patch models "
                                                      "(timm's drop_path_rate); 0 = off"))
    parser.add_argument("--ema", type=float,
                        help=from_recipe("ema", "evaluate and checkpoint an exponential moving average of the "
                                                "weights with this decay (e.g. 0.999), warmed up over the first "
                                                "steps; 0 = off"))
    parser.add_argument("--data-root", default="data", help="folder holding named datasets (default: data)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument("--deterministic", action="store_true", help="use deterministic algorithms (slower)")
    parser.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda when available)")
    parser.add_argument("--workers", type=int, default=None,
                        help="decoding threads, or DataLoader workers with --no-cache (default: CPU cores; 0 with --no-cache)")
    parser.add_argument("--weights", default=None,
                        help="local pretrained weights: ImageNet Xception (timm or Cadene layout) for XceptionBased, "
                             "or a state dict of the timm architecture for timm:ARCH and patch:ARCH (whose head "
                             "is replaced)")
    parser.add_argument("--no-pretrained", action="store_true",
                        help="XceptionBased from random weights (timm and patch models are random without "
                             "--weights)")
    parser.add_argument("--selection-metric", choices=SELECTION_METRICS,
                        help=from_recipe("selection_metric", "validation metric that picks the best checkpoint "
                                                             "and drives --patience"))
    parser.add_argument("--train-fraction", type=float, default=1.0, metavar="F",
                        help="train on an evenly spaced fraction F of each class's training images (file order; "
                             "0.5 = every second one), for learning curves; validation and test stay whole "
                             "(default: 1)")
    parser.add_argument("--no-cache", action="store_true",
                        help="decode images with PIL on every access (the course's per-item path) instead of once")
    parser.add_argument("--cache-dir", default=".cache", help="where decoded splits are cached (default: .cache)")
    parser.add_argument("--strict", action="store_true", help="fail on the first unreadable image instead of skipping it")
    parser.add_argument("--amp", choices=("auto", "bf16", "off"), default="auto",
                        help="bf16 autocast + channels_last on CUDA: auto = on for XceptionBased, timm and patch models, "
                             "off for SimpleNet (default: auto)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model")
    parser.add_argument("--resume", action="store_true", help="continue the run from its last checkpoint")
    parser.add_argument("--checkpoint-interval", type=float, default=60.0, metavar="SECONDS",
                        help="write the last checkpoint (for --resume) after the first epoch ending SECONDS after "
                             "its last write, at every new best epoch and at the end; a killed run redoes up to "
                             "SECONDS plus the epoch in progress. 0 = after every epoch (default: 60)")
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier run's results")
    parser.add_argument("--out-dir", default="out", help="metrics JSON folder (default: out)")
    parser.add_argument("--checkpoint-dir", default="checkpoints", help="checkpoint folder (default: checkpoints)")
    args = parser.parse_args(argv)
    args.recipe_overrides = [key for key in RECIPES[args.recipe] if getattr(args, key) is not None]
    for key, value in RECIPES[args.recipe].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    check_recipe_values(parser, args)
    if not args.lr > 0:
        parser.error(f"--lr must be > 0 (got {args.lr})")
    if args.epochs < 1:
        parser.error(f"--epochs must be >= 1 (got {args.epochs})")
    if args.batch_size < 1:
        parser.error(f"--batch_size must be >= 1 (got {args.batch_size})")
    if not 0 < args.train_fraction <= 1:
        parser.error(f"--train-fraction must be in (0, 1] (got {args.train_fraction})")
    if not args.checkpoint_interval >= 0:
        parser.error(f"--checkpoint-interval must be >= 0 seconds (got {args.checkpoint_interval})")
    if not 0 <= args.seed < 2 ** 32:
        parser.error(f"--seed must be in 0..{2 ** 32 - 1} (got {args.seed})")
    if args.workers is not None and args.workers < 0:
        parser.error(f"--workers must be >= 0 (got {args.workers})")
    args.dataset_path = resolve_dataset(args.dataset, args.data_root)
    if args.dataset_path is None:
        found = sorted(path.name for path in Path(args.data_root).glob("*") if (path / "train").is_dir())
        hint = f" (datasets under {args.data_root}: {', '.join(found)})" if found else ""
        parser.error(f"dataset {args.dataset!r} not found as a path or under --data-root {args.data_root!r}{hint}; "
                     "run 'python demo_data.py' for the demo datasets or pass the folder that holds train/ val/ test/")
    missing = [split for split in SPLITS if not (args.dataset_path / split).is_dir()]
    if missing:
        parser.error(f"{args.dataset_path}: missing split folder(s) {', '.join(missing)}; "
                     "a dataset holds train/, val/ and test/, each with real/ and fake/")
    args.device = resolve_device(args.device, parser)
    check_output_path(parser, "--out-dir", args.out_dir, folder=True)
    check_output_path(parser, "--checkpoint-dir", args.checkpoint_dir, folder=True)
    if args.weights is not None and not Path(args.weights).is_file():
        parser.error(f"--weights {args.weights}: file not found")
    logging_parameters = LoggingParameters(args.model, dataset_name(args.dataset_path), args.optimizer,
                                           optimizer_params(args))
    paths = output_paths(logging_parameters, args.out_dir, args.checkpoint_dir)
    existing = [path for path in paths if path.exists()]
    if args.resume and args.overwrite:
        parser.error("--resume and --overwrite contradict each other: --resume continues the run, "
                     "--overwrite starts it again; pass one")
    if existing and not (args.overwrite or args.resume):
        parser.error(f"{existing[0]} exists from an earlier run; pass --resume to continue it "
                     "or --overwrite to replace it (or choose another --out-dir/--checkpoint-dir)")
    if existing and args.resume and not paths[2].exists():
        parser.error(f"--resume: {paths[2]} (the run's last checkpoint) not found, so {existing[0]} cannot be "
                     "continued; pass --overwrite to start the run again")
    return args, logging_parameters


def check_recipe_values(parser, args):
    """parser.error (exit 2) on recipe values out of range or that do not fit the model."""
    if args.optimizer != "AdamW":
        if "weight_decay" in args.recipe_overrides and args.weight_decay:
            parser.error(f"--weight-decay {args.weight_decay}: applies to AdamW only; add -o AdamW or drop it")
        args.weight_decay = 0.0
    for flag, value, low, high in (("--weight-decay", args.weight_decay, 0, math.inf),
                                   ("--warmup-epochs", args.warmup_epochs, 0, math.inf),
                                   ("--label-smoothing", args.label_smoothing, 0, 0.99),
                                   ("--patience", args.patience, 0, math.inf),
                                   ("--clip-grad-norm", args.clip_grad_norm, 0, math.inf),
                                   ("--jitter", args.jitter, 0, 0.99),
                                   ("--blur-prob", args.blur_prob, 0, 1),
                                   ("--jpeg-prob", args.jpeg_prob, 0, 1),
                                   ("--erase-prob", args.erase_prob, 0, 1),
                                   ("--crop-scale", args.crop_scale, 0.01, 1),
                                   ("--mixup", args.mixup, 0, math.inf),
                                   ("--drop-path", args.drop_path, 0, 0.99),
                                   ("--ema", args.ema, 0, 0.99999)):
        if not (math.isfinite(value) and low <= value <= high):
            allowed = f"a finite number >= {low}" if high == math.inf else f"in [{low}, {high}]"
            parser.error(f"{flag} must be {allowed} (got {value})")
    if args.crop == "native":
        if not MIN_CROP_SIZE <= args.crop_size <= IMAGE_SIZE:
            parser.error(f"--crop-size must be in {MIN_CROP_SIZE}..{IMAGE_SIZE} (got {args.crop_size})")
        if not has_global_pooling(args.model) and args.crop_size != IMAGE_SIZE:
            parser.error(f"--crop native: {args.model} takes {IMAGE_SIZE}x{IMAGE_SIZE} inputs only; "
                         f"use --crop pad or a model with global pooling (XceptionBased, {TIMM_PREFIX}ARCH, {PATCH_PREFIX}ARCH)")
    if args.drop_path and not args.model.startswith((TIMM_PREFIX, PATCH_PREFIX)):
        parser.error(f"--drop-path: {args.model} has no stochastic depth; use a {TIMM_PREFIX}ARCH or "
                     f"{PATCH_PREFIX}ARCH model or drop the flag")
    if not 0 <= args.momentum < 1:
        parser.error(f"--momentum must be in [0, 1) (got {args.momentum})")
    if args.weights is not None and args.model == "SimpleNet":
        parser.error("--weights: SimpleNet has no pretrained weights to load; drop the flag or choose "
                     f"XceptionBased, {TIMM_PREFIX}ARCH or {PATCH_PREFIX}ARCH")
    if args.normalization == "model" and args.model == "SimpleNet":
        parser.error("--normalization model: SimpleNet has no pretrained backbone statistics; "
                     "use --normalization dataset or symmetric")


def is_pretrained(args):
    """Whether the model starts from pretrained weights (which decides --normalization auto)."""
    return args.weights is not None or (args.model == "XceptionBased" and not args.no_pretrained)


def resolve_dataset(name, data_root):
    """The dataset folder: ``name`` itself when it is a folder, else ``data_root/name``; None if neither."""
    for candidate in (Path(name), Path(data_root) / name):
        if candidate.is_dir():
            return candidate
    return None


def optimizer_params(args):
    """The optimizer's settings, as the JSON and the run's name record them."""
    if args.optimizer == "SGD":
        return {"lr": args.lr, "momentum": args.momentum}
    if args.optimizer == "AdamW":
        return {"lr": args.lr, "weight_decay": args.weight_decay}
    return {"lr": args.lr}


def load_splits(args):
    """The train/val/test splits: decoded once (cached) by default, per-item with --no-cache.
    Validation and test may hold one class only (their AUC is then reported as undefined)."""
    splits = []
    for split in SPLITS:
        dataset = FacesDataset(args.dataset_path / split, require_both_classes=split == "train")
        if split == "train" and args.train_fraction < 1:
            total = len(dataset)
            dataset.keep_fraction(args.train_fraction)
            print(f"train: {len(dataset)} of {total} images kept (--train-fraction {args.train_fraction:g})")
        if not args.no_cache:
            dataset = decode_dataset(dataset, args.cache_dir, args.workers, args.strict)
            where = place_images(dataset, args.device)
            print(f"{split}: {len(dataset)} images decoded, held in {where}")
        else:
            dataset = drop_unreadable(dataset, args.workers, args.strict)
            print(f"{split}: {len(dataset)} images, decoded per item")
        if len(set(map(int, dataset.labels))) < 2:
            if split == "val" and args.selection_metric == "val_auc":
                raise DatasetError(f"{dataset.root_path}: holds one class only, so its AUC is undefined; "
                                   "add images of the other class or use --selection-metric val_acc")
            print(f"warning: {dataset.root_path} holds one class only: accuracy is reported, AUC is undefined")
        splits.append(dataset)
    if not args.no_cache:
        train_images = set(pixel_digests(splits[0]))
        for dataset in splits[1:]:
            shared = sum(digest in train_images for digest in pixel_digests(dataset))
            if shared:
                print(f"warning: {shared} image(s) of {dataset.root_path} also appear in {splits[0].root_path} "
                      "(identical pixels): the results on this split are optimistic")
    return splits


def pixel_digests(decoded):
    """A hash of each decoded image's pixels (finds duplicates whatever their file names)."""
    return [hashlib.sha1(image.numpy().tobytes()).digest() for image in decoded.images.cpu()]


def after_interrupt(args, logging_parameters, started):
    """What to run after Ctrl-C: --resume when this run has a last checkpoint of its own, else the command again."""
    last_path = output_paths(logging_parameters, args.out_dir, args.checkpoint_dir)[2]
    if last_path.exists() and not (args.overwrite and last_path.stat().st_mtime < started):
        how = "with --resume in place of --overwrite" if args.overwrite else "with --resume"
        return f"run the same command {how} to continue from the last checkpoint"
    return "no epoch was saved: run the same command again"


def main(argv=None):
    started = time.time()
    args, logging_parameters = parse_args(argv)
    seed_everything(args.seed, args.deterministic)
    autocast_dtype, channels_last = precision_settings(args.model, args.device, args.amp)
    config = {key: (str(value) if isinstance(value, Path) else value) for key, value in vars(args).items()}
    config.update(autocast=str(autocast_dtype) if autocast_dtype else "off", channels_last=channels_last)
    resuming = args.resume and output_paths(logging_parameters, args.out_dir, args.checkpoint_dir)[2].exists()
    try:  # fails fast; a resumed run's weights come from its checkpoint
        model = build_model(args.model, pretrained=not (args.no_pretrained or resuming),
                            weights=None if resuming else args.weights, drop_path_rate=args.drop_path)
    except (WeightsUnavailableError, CheckpointError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except ModelNameError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    try:
        train, val, test = load_splits(args)
        config["data_digest"] = data_digest((train, val, test))
        normalization = resolve_normalization(args.normalization, args.model, model, is_pretrained(args), train)
        print(f"normalization ({args.normalization}): mean {normalization[0]}, std {normalization[1]}")
        config["normalization_mean_std"] = [list(normalization[0]), list(normalization[1])]
        optimizer = build_optimizer(args.optimizer, model.parameters(), args.lr, args.momentum, args.weight_decay)
        steps_per_epoch = math.ceil(len(train) / args.batch_size)
        scheduler = build_scheduler(optimizer, args.schedule, args.epochs * steps_per_epoch,
                                    round(args.warmup_epochs * steps_per_epoch))
        loss_weights = class_weights(train.labels) if args.class_balance == "weights" else None
        criterion = torch.nn.CrossEntropyLoss(weight=loss_weights, label_smoothing=args.label_smoothing)
        sample_weights = balanced_sample_weights(train.labels) if args.class_balance == "sampler" else None
        augment = AugmentConfig(crop=args.crop, crop_size=args.crop_size, crop_scale=args.crop_scale,
                                flip=args.flip, jitter=args.jitter,
                                blur_prob=args.blur_prob, jpeg_prob=args.jpeg_prob, erase_prob=args.erase_prob)
        trainer = Trainer(model, optimizer, criterion, args.batch_size, train, val, test, device=args.device,
                          normalization=normalization, autocast_dtype=autocast_dtype,
                          channels_last=channels_last, compile_model=args.compile,
                          workers=args.workers if args.no_cache and args.workers else 0, seed=args.seed,
                          selection_metric=args.selection_metric, out_dir=args.out_dir,
                          checkpoint_dir=args.checkpoint_dir, config=config, scheduler=scheduler,
                          clip_grad_norm=args.clip_grad_norm, patience=args.patience, augment=augment,
                          sample_weights=sample_weights, mixup=args.mixup, ema_decay=args.ema,
                          checkpoint_interval=args.checkpoint_interval)
        start = time.perf_counter()
        history = trainer.run(args.epochs, logging_parameters, resume=args.resume)
    except (DatasetError, CheckpointError, NonFiniteLossError, WeightsUnavailableError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except WriteError as error:  # the files written before are whole: the run goes on from its last checkpoint
        print(f"error: {error.problem}; {error.fix}; {after_interrupt(args, logging_parameters, started)}",
              file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"\ninterrupted; {after_interrupt(args, logging_parameters, started)}", file=sys.stderr)
        return 130
    json_path, best_path, last_path = output_paths(logging_parameters, args.out_dir, args.checkpoint_dir)
    print(f"\n{logging_parameters.run_name} on {args.device}, {time.perf_counter() - start:.0f}s "
          f"(* = best epoch on {args.selection_metric}):\n")
    print(format_history_table(history))
    print(f"\nmetrics: {json_path}\nbest checkpoint: {best_path}\nlast checkpoint: {last_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
