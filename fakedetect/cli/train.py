"""Train a real/fake face detector.

    python train_main.py -m SimpleNet -d demo_fakes                  # the improved recipe (default)
    python train_main.py -m SimpleNet -d demo_fakes --recipe course  # the course's recipe exactly
    python train_main.py -m timm:resnet18 -d demo_fakes -e 20        # any timm architecture
    python train_main.py -d demo_fakes --seed 1 --run-name demo_seed1  # one of a grid of seeds

A recipe sets the optimizer, learning rate and schedule, batch size, epochs, loss, class
balancing, early stopping, normalization and augmentations (fakedetect/config/recipe.py declares each knob);
every recipe flag given on the command line overrides its recipe value, and the JSON's
``config`` records them all.

``-d`` is a dataset name under ``--data-root`` (default ``data``) or a path; it must hold
``train/``, ``val/`` and ``test/``, each with ``real/`` and ``fake/``. The run is named
``--run-name`` (default ``{dataset}_{model}_{optimizer}``) and writes ``out/{run}.json``
(per-epoch metrics and the run's config), ``checkpoints/{run}.pt`` (best epoch on validation)
and ``checkpoints/{run}_last.pt`` (everything needed for ``--resume``, written about every
``--checkpoint-interval`` seconds, at every new best epoch and at the end); fakedetect/io/runs.py defines them.
"""
import argparse
import contextlib
import dataclasses
import importlib.util
import os
import sys
import time
from pathlib import Path

from fakedetect.cli.common import (ArgumentParser, add_device_flag, add_recipe_arguments, add_run_flags,
                                   check_run_flags, dataset_folder, resolve_device)
from fakedetect.config.config_file import NOT_RESTORED, ConfigError, read_config, write_config
from fakedetect.config.recipe import DEFAULT_RECIPE, IMAGE_SIZE, RECIPE_NAMES, apply_recipe
from fakedetect.data.batches import SINGLE
from fakedetect.data.cache import data_digest, decode_dataset, drop_unreadable, place_images
from fakedetect.data.folders import LANDMARKS_FILE, MASKS_FOLDER, SPLITS, FacesDataset, landmarks_tensor, masks_tensor
from fakedetect.data.images import DatasetError
from fakedetect.explain.grad_cam import explain_pixels
from fakedetect.io.files import CheckpointError, Inputs, WriteError, check_output_path
from fakedetect.io.runs import RunLockedError
from fakedetect.models.hub_weights import WeightsUnavailableError
from fakedetect.models.precision import precision_settings
from fakedetect.models.registry import build_model, has_global_pooling, has_mask_head
from fakedetect.models.timm_models import PATCH_PREFIX, TIMM_PREFIX, ModelNameError
from fakedetect.train import distributed
from fakedetect.train.distributed import device_of
from fakedetect.train.normalization import resolve_normalization
# imports no tensorboard until a logger is made
from fakedetect.train.tensorboard_log import EVENT_FILE_PREFIX, TensorBoardLogger
from fakedetect.train.trainer import NonFiniteLossError, Runtime, Trainer, format_history_table, seed_everything


def parse_args(argv=None, ranks=SINGLE):
    """(checked arguments, the Recipe, the Run); exits 2 with a one-line fix on bad input."""
    parser = ArgumentParser(description=__doc__)
    run_group = add_run_flags(parser, training=True)
    run_group.add_argument("--config", default=None, metavar="FILE",
                           help="YAML file of settings (or a run's out/{run}.yaml or .json) that sets this "
                                "command's defaults; flags given here override it")
    run_group.add_argument("--recipe", default=DEFAULT_RECIPE, choices=RECIPE_NAMES,
                           help=f"training recipe the recipe flags default to (default: {DEFAULT_RECIPE})")
    run_group.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    run_group.add_argument("--weights", default=None,
                           help="local pretrained weights (a torch state dict or .safetensors): ImageNet Xception "
                                "(timm or Cadene layout) for XceptionBased, or a state dict of the timm "
                                "architecture for timm:ARCH and patch:ARCH (whose head is replaced)")
    run_group.add_argument("--pretrained", action="store_true",
                           help="timm:ARCH and patch:ARCH from timm's pretrained weights, downloaded once through "
                                "the Hugging Face hub into its cache (XceptionBased starts from them by default)")
    run_group.add_argument("--no-pretrained", action="store_true",
                           help="XceptionBased from random weights (timm and patch models are random without "
                                "--pretrained or --weights)")
    run_group.add_argument("--train-fraction", type=float, default=1.0, metavar="F",
                           help="train on an evenly spaced fraction F of each class's training images (file order; "
                                "0.5 = every second one), for learning curves; validation and test stay whole "
                                "(default: 1)")
    run_group.add_argument("--real-only", action="store_true",
                           help="train on the real images of the training split only, their fakes made by "
                                "--self-blend (validation and test keep their real fakes)")
    add_recipe_arguments(parser.add_argument_group("recipe (fakedetect/config/recipe.py declares these knobs)"))
    data = parser.add_argument_group("data path")
    data.add_argument("--no-cache", action="store_true",
                      help="decode images with PIL on every access (the course's per-item path) instead of once")
    data.add_argument("--cache-dir", default=".cache", help="where decoded splits are cached (default: .cache)")
    data.add_argument("--strict", action="store_true", help="fail on the first unreadable image instead of skipping it")
    data.add_argument("--workers", type=int, default=None,
                      help="decoding threads, or DataLoader workers with --no-cache (default: CPU cores; 0 with --no-cache)")
    speed = parser.add_argument_group("device and speed")
    add_device_flag(speed)
    speed.add_argument("--amp", choices=("auto", "bf16", "off"), default="auto",
                       help="bf16 autocast + channels_last on CUDA: auto = on for XceptionBased, timm and patch "
                            "models, off for SimpleNet (default: auto)")
    speed.add_argument("--compile", action="store_true", help="torch.compile the model")
    speed.add_argument("--deterministic", action="store_true", help="use deterministic algorithms (slower)")
    speed.add_argument("--sync-bn", action="store_true",
                       help="under torchrun on GPUs: BatchNorm statistics over the global batch (SyncBatchNorm) "
                            "instead of each process's part of it")
    outputs = parser.add_argument_group("outputs and resume")
    outputs.add_argument("--resume", action="store_true", help="continue the run from its last checkpoint")
    outputs.add_argument("--overwrite", action="store_true", help="replace an earlier run's results")
    outputs.add_argument("--tensorboard", nargs="?", const="", default=None, metavar="DIR",
                         help="log every step's loss and learning rate, every epoch's metrics and the best epoch's "
                              "ROC curve and Grad-CAM sample to TensorBoard in DIR (default DIR: "
                              "{out-dir}/tb/{run}); off without the flag")
    outputs.add_argument("--checkpoint-interval", type=float, default=60.0, metavar="SECONDS",
                         help="write the last checkpoint (for --resume) after the first epoch ending SECONDS after "
                              "its last write, at every new best epoch and at the end; a killed run redoes up to "
                              "SECONDS plus the epoch in progress. 0 = after every epoch (default: 60)")
    config_path = config_flag(argv)
    if config_path is not None:  # the file's settings become the defaults, so the command line overrides them
        parser.set_defaults(**config_defaults(parser, config_path))
    args = parser.parse_args(argv)
    recipe = apply_recipe(args, parser.error)
    check_values(parser, args)
    args.dataset_path = dataset_folder(parser, args.dataset, args.data_root)
    missing = [split for split in SPLITS if not (args.dataset_path / split).is_dir()]
    if missing:
        parser.error(f"{args.dataset_path}: missing split folder(s) {', '.join(missing)}; "
                     "a dataset holds train/, val/ and test/, each with real/ and fake/")
    args.device = str(device_of(ranks, resolve_device(args.device, parser)))
    check_processes(parser, args, ranks)
    if args.weights is not None and not Path(args.weights).is_file():
        parser.error(f"--weights {args.weights}: file not found")
    inputs = Inputs([args.dataset_path / split for split in SPLITS] + ([args.weights] if args.weights else []))
    for flag in ("--out-dir", "--checkpoint-dir", "--cache-dir"):
        check_output_path(parser, flag, getattr(args, flag[2:].replace("-", "_")), inputs, folder=True)
    run = check_run_flags(parser, args, args.dataset_path, optimizer_params(args))
    if args.tensorboard is not None and importlib.util.find_spec("tensorboard") is None:
        parser.error("--tensorboard needs the tensorboard package: pip install 'tensorboard>=2.14', or drop the flag")
    if args.tensorboard is not None:
        check_output_path(parser, "--tensorboard", events_dir(args, run), inputs, folder=True)
    check_earlier_run(parser, args, run)
    check_earlier_events(parser, args, run)
    if args.real_only and args.patience and "patience" not in args.recipe_overrides:
        # measured on FaceForensics++: validation AUC climbed for 97 of 100 epochs; --patience 4 stopped at epoch 9
        print(f"--real-only: early stopping off (--patience 0, not {args.patience}): pseudo-fakes are learnt slowly "
              "and validation AUC climbs for many epochs; pass --patience N to stop early")
        args.patience = 0
    recipe = dataclasses.replace(recipe, patience=args.patience, self_blend_pairs=args.self_blend_pairs)
    return args, recipe, run


def config_flag(argv):
    """The --config FILE of ``argv`` (None without one), read before the other flags (which it sets defaults of)."""
    pre_parser = ArgumentParser(add_help=False)
    pre_parser.add_argument("--config", default=None)
    return pre_parser.parse_known_args(argv)[0].config


def config_defaults(parser, path):
    """The parser defaults config file ``path`` sets, each value checked as its flag's would be;
    ``parser.error`` (exit 2, one line naming the file and the key) on an unknown key or a bad value."""
    try:
        settings = read_config(path)
    except ConfigError as error:
        parser.error(str(error))
    actions = {action.dest: action for action in parser._actions if action.option_strings}
    defaults = {}
    for key, value in settings.items():
        if key in NOT_RESTORED:
            continue
        action = actions.get(key)
        if action is None or key == "help":
            parser.error(f"--config {path}: unknown key {key!r}; use the config names of train_main.py's flags "
                         "(the keys of a run's out/{run}.yaml), e.g. lr, batch_size, model")
        try:
            defaults[key] = checked_value(action, value)
        except ValueError as error:
            parser.error(f"--config {path}: {key}: {error}")
    return defaults


def checked_value(action, value):
    """``value`` as the flag of ``action`` would parse it (its type and choices); ValueError why not."""
    flag = next(option for option in action.option_strings + ["--" + action.dest] if option.startswith("--"))
    if value is None:
        if action.default is not None:
            raise ValueError(f"null is not a value of {flag}")
        return None
    if action.nargs == 0 or isinstance(action, argparse.BooleanOptionalAction):  # a switch
        if not isinstance(value, bool):
            raise ValueError(f"{value!r} is not a value of the switch {flag}; use true or false")
        return value
    if isinstance(value, (dict, list, bool)):
        raise ValueError(f"{value!r} is not a value of {flag}")
    if action.type is not None:  # as argparse parses the flag's text
        try:
            value = action.type(str(value))
        except argparse.ArgumentTypeError as error:  # the type's own message says the fix (e.g. -m's)
            raise ValueError(f"{flag}: {error}") from None
        except (ValueError, TypeError):
            raise ValueError(f"{value!r} is not a value of {flag}") from None
    elif not isinstance(value, str):
        raise ValueError(f"{value!r} is not a value of {flag} (a text)")
    if action.choices is not None and value not in action.choices:
        raise ValueError(f"{value!r} is not a value of {flag}; choose one of {', '.join(map(str, action.choices))}")
    return value


def check_values(parser, args):
    """parser.error (exit 2) on values that do not fit each other or the model."""
    if args.optimizer != "AdamW":
        if "weight_decay" in args.recipe_overrides and args.weight_decay:
            parser.error(f"--weight-decay {args.weight_decay}: applies to AdamW only; add -o AdamW or drop it")
        args.weight_decay = 0.0
    if args.crop == "native" and not has_global_pooling(args.model) and args.crop_size != IMAGE_SIZE:
        parser.error(f"--crop native: {args.model} takes {IMAGE_SIZE}x{IMAGE_SIZE} inputs only; use --crop pad or "
                     f"a model with global pooling (XceptionBased, {TIMM_PREFIX}ARCH, {PATCH_PREFIX}ARCH)")
    if args.drop_path and not args.model.startswith((TIMM_PREFIX, PATCH_PREFIX)):
        parser.error(f"--drop-path: {args.model} has no stochastic depth; use a {TIMM_PREFIX}ARCH or "
                     f"{PATCH_PREFIX}ARCH model or drop the flag")
    if args.pretrained and (args.no_pretrained or args.weights is not None):
        parser.error(f"--pretrained and {'--no-pretrained' if args.no_pretrained else '--weights'} contradict each "
                     "other: --pretrained loads timm's weights from the hub; pass one")
    if (args.weights is not None or args.pretrained) and args.model == "SimpleNet":
        flag = "--weights" if args.weights is not None else "--pretrained"
        parser.error(f"{flag}: SimpleNet has no pretrained weights to load; drop the flag or choose "
                     f"XceptionBased, {TIMM_PREFIX}ARCH or {PATCH_PREFIX}ARCH")
    if args.normalization == "model" and args.model == "SimpleNet":
        parser.error("--normalization model: SimpleNet has no pretrained backbone statistics; "
                     "use --normalization dataset or symmetric")
    for flag, ok, allowed in (("--train-fraction", 0 < args.train_fraction <= 1, "in (0, 1]"),
                              ("--checkpoint-interval", args.checkpoint_interval >= 0, ">= 0 seconds"),
                              ("--seed", 0 <= args.seed < 2 ** 32, f"in 0..{2 ** 32 - 1}"),
                              ("--workers", args.workers is None or args.workers >= 0, ">= 0")):
        if not ok:
            parser.error(f"{flag} must be {allowed} (got {getattr(args, flag[2:].replace('-', '_'))})")
    if args.real_only and not args.self_blend:
        parser.error("--real-only needs --self-blend P (P > 0) to make the training fakes from the real images")
    if args.real_only and not args.no_cache and "self_blend_pairs" not in args.recipe_overrides:
        args.self_blend_pairs = True  # each real beside its own pseudo-fake, as SBI builds its batches
    if args.self_blend == 1 and not args.self_blend_pairs:
        parser.error("--self-blend 1: every real training image would become a pseudo-fake, leaving no real image to "
                     "learn from; add --self-blend-pairs (each real keeps its place, its pseudo-fake joins it) or "
                     "choose P < 1")
    if args.self_blend_pairs and not args.self_blend:
        parser.error("--self-blend-pairs pairs real images with their pseudo-fakes: add --self-blend P (P > 0)")
    if args.mask_loss and not has_mask_head(args.model):
        parser.error(f"--mask-loss: {args.model} has no mask head; choose SeamNet, SeamNet-WxD or seam:ARCH, "
                     "or drop the flag")
    if args.mask_loss and args.mixup:
        parser.error("--mask-loss and --mixup: a mixed image has no one manipulation mask; drop one of them")
    for flag, on in (("--mask-loss", args.mask_loss), ("--self-blend-pairs", args.self_blend_pairs)):
        if on and args.no_cache:
            parser.error(f"{flag} needs the decoded cache (batches built on the device); drop --no-cache")
    if args.resume and args.overwrite:
        parser.error("--resume and --overwrite contradict each other: --resume continues the run, "
                     "--overwrite starts it again; pass one")


def check_processes(parser, args, ranks):
    """parser.error when the flags do not fit the processes torchrun started."""
    if args.sync_bn and not args.device.startswith("cuda"):
        parser.error("--sync-bn: SyncBatchNorm runs on CUDA GPUs only; on the CPU drop the flag (each process "
                     "then keeps BatchNorm statistics of its part of the batch)")
    if args.batch_size < ranks.world:
        parser.error(f"--batch-size {args.batch_size}: the global batch is split across the {ranks.world} "
                     f"processes, so it must be at least {ranks.world}")


def check_earlier_run(parser, args, run):
    """parser.error when the run's files exist and neither --resume nor --overwrite says what to do with them."""
    existing = [path for path in run.files if path.exists()]
    if existing and not (args.overwrite or args.resume):
        parser.error(f"{existing[0]} exists from an earlier run; pass --resume to continue it "
                     "or --overwrite to replace it (or choose another --run-name)")
    if existing and args.resume and not run.last_path.exists():
        parser.error(f"--resume: {run.last_path} (the run's last checkpoint) not found, so {existing[0]} cannot be "
                     "continued; pass --overwrite to start the run again")


def events_dir(args, run):
    """The folder of --tensorboard's events: DIR, or the run's own folder for the flag alone ("")."""
    return Path(args.tensorboard or run.tensorboard_dir)


def resuming(args, run):
    """Whether this command continues the run (--resume with a last checkpoint), rather than starting it."""
    return args.resume and run.last_path.exists()


def check_earlier_events(parser, args, run):
    """parser.error when a new run would write its TensorBoard events beside an earlier run's without --overwrite."""
    if args.tensorboard is None or args.overwrite or args.resume:
        return
    earlier = sorted(events_dir(args, run).glob(f"{EVENT_FILE_PREFIX}*"))
    if earlier:
        parser.error(f"--tensorboard: {earlier[0].parent} holds an earlier run's events ({earlier[0].name}); pass "
                     "--overwrite to hide them behind this run's (they are kept), or choose another folder")


def is_pretrained(args):
    """Whether the model starts from pretrained weights (which decides --normalization auto)."""
    return args.weights is not None or args.pretrained or (args.model == "XceptionBased" and not args.no_pretrained)


def optimizer_params(args):
    """The optimizer's settings, as the JSON and the run's name record them."""
    if args.optimizer == "SGD":
        return {"lr": args.lr, "momentum": args.momentum}
    if args.optimizer == "AdamW":
        return {"lr": args.lr, "weight_decay": args.weight_decay}
    return {"lr": args.lr}


def load_splits(args, progress=True):
    """The train/val/test splits: decoded once (cached) by default, per-item with --no-cache.
    Validation and test may hold one class only (their AUC is then reported as undefined)."""
    splits = []
    for split in SPLITS:
        dataset = FacesDataset(args.dataset_path / split, require_both_classes=split == "train" and not args.real_only)
        if split == "train" and args.real_only:
            dataset.keep_real_only()
            print(f"train: {len(dataset)} real images; their fakes are made by --self-blend {args.self_blend:g}")
        if split == "train" and args.train_fraction < 1:
            total = len(dataset)
            dataset.keep_fraction(args.train_fraction)
            print(f"train: {len(dataset)} of {total} images kept (--train-fraction {args.train_fraction:g})")
        if not args.no_cache:
            dataset = decode_dataset(dataset, args.cache_dir, args.workers, args.strict, progress)
            where = place_images(dataset, args.device)
            print(f"{split}: {len(dataset)} images decoded, {where}")
        else:
            dataset = drop_unreadable(dataset, args.workers, args.strict, progress)
            print(f"{split}: {len(dataset)} images, decoded per item")
        if split == "train" and args.self_blend:
            dataset.landmarks = landmarks_tensor(dataset)
            found = int((~dataset.landmarks.isnan().flatten(1).any(1)).sum())
            print(f"train: {found} of {len(dataset)} images have landmarks ({LANDMARKS_FILE}); --self-blend-mask "
                  f"{args.self_blend_mask}")
            if not found and args.self_blend_mask == "hull":
                raise DatasetError(f"{dataset.root_path / LANDMARKS_FILE}: no training image has landmarks, and "
                                   "--self-blend-mask hull makes pseudo-fakes only of images that have; rebuild the "
                                   "dataset with build_faces_dataset.py (dlib) or use --self-blend-mask hull-or-ellipse")
        if split == "train" and args.mask_loss:
            dataset.masks, dataset.mask_known = masks_tensor(dataset)
            print(f"train: {int(dataset.mask_known.sum())} of {len(dataset)} images have a known manipulation mask "
                  f"(real images, and fakes with one in {MASKS_FOLDER}/); pseudo-fakes bring their own")
        if len(set(map(int, dataset.labels))) < 2 and not (split == "train" and args.real_only):
            if split == "val" and args.selection_metric == "val_auc":
                raise DatasetError(f"{dataset.root_path}: holds one class only, so its AUC is undefined; "
                                   "add images of the other class or use --selection-metric val_acc")
            print(f"warning: {dataset.root_path} holds one class only: accuracy is reported, AUC is undefined")
        splits.append(dataset)
    if not args.no_cache:
        train_images = set(splits[0].image_digests)
        for dataset in splits[1:]:
            shared = sum(digest in train_images for digest in dataset.image_digests)
            if shared:
                print(f"warning: {shared} image(s) of {dataset.root_path} also appear in {splits[0].root_path} "
                      "(identical pixels): the results on this split are optimistic")
    return splits


def after_interrupt(args, run, started):
    """What to run after Ctrl-C: --resume when this run has a last checkpoint of its own, else the command again."""
    if run.last_path.exists() and not (args.overwrite and run.last_path.stat().st_mtime < started):
        how = "with --resume in place of --overwrite" if args.overwrite else "with --resume"
        return f"run the same command {how} to continue from the last checkpoint"
    return "no epoch was saved: run the same command again"


def main(argv=None):
    started = time.time()
    ranks = distributed.from_environment()
    if not ranks.main:  # rank 0 speaks for the run; the others' errors still reach stderr
        sys.stdout = open(os.devnull, "w")
    args, recipe, run = parse_args(argv, ranks)  # every rank checks the files before any rank writes
    try:
        with distributed.process_group(ranks, args.device):
            model = build(args, run)  # fails fast, before anything is written
            # held from before the data is decoded, so a second run of this name stops at once
            with run.lock() if ranks.main else contextlib.nullcontext():
                history = train(args, recipe, run, model, ranks)
    except (DatasetError, CheckpointError, NonFiniteLossError, WeightsUnavailableError, RunLockedError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except WriteError as error:  # the files written before are whole: the run goes on from its last checkpoint
        print(f"error: {error.problem}; {error.fix}; {after_interrupt(args, run, started)}", file=sys.stderr)
        return 1
    except ModelNameError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\ninterrupted; {after_interrupt(args, run, started)}", file=sys.stderr)
        return 130
    print(f"\n{run.name} on {args.device}, {time.time() - started:.0f}s (* = best epoch on {recipe.selection_metric}):\n")
    print(format_history_table(history))
    best = run.best_path if run.best_path.exists() else f"none ({run.best_path} is missing: no epoch has beaten the best " \
        "epoch after it was deleted)"
    print(f"\nmetrics: {run.json_path}\nbest checkpoint: {best}\nlast checkpoint: {run.last_path}")
    return 0


def build(args, run):
    """The model, seeded; a resumed run's weights come from its checkpoint, so none are loaded for it."""
    seed_everything(args.seed, args.deterministic)
    resumed = resuming(args, run)
    return build_model(args.model, pretrained=is_pretrained(args) and not resumed,
                       weights=None if resumed else args.weights, drop_path_rate=args.drop_path)


def train(args, recipe, run, model, ranks=SINGLE):
    """Decode the splits and train ``model`` on them; returns the history."""
    autocast_dtype, channels_last = precision_settings(args.model, args.device, args.amp)
    config = {key: (str(value) if isinstance(value, Path) else value) for key, value in vars(args).items()}
    config.update(autocast=str(autocast_dtype) if autocast_dtype else "off", channels_last=channels_last,
                  processes=ranks.world)
    with distributed.main_rank_first(ranks):  # rank 0 decodes and writes the cache the others then map
        splits = load_splits(args, progress=ranks.main)
    config["data_digest"] = data_digest(splits)
    normalization = resolve_normalization(args.normalization, args.model, model, is_pretrained(args), splits[0])
    print(f"normalization ({args.normalization}): mean {normalization[0]}, std {normalization[1]}")
    config["normalization_mean_std"] = [list(normalization[0]), list(normalization[1])]
    if ranks.main:
        write_config(run.config_path, config)  # --config this file repeats the run
    runtime = Runtime(device=args.device, autocast_dtype=autocast_dtype, channels_last=channels_last,
                      compile=args.compile, workers=args.workers if args.no_cache and args.workers else 0,
                      seed=args.seed, checkpoint_interval=args.checkpoint_interval, progress=ranks.main,
                      ranks=ranks, sync_bn=args.sync_bn)
    log_dir = events_dir(args, run) if args.tensorboard is not None and ranks.main else None
    with open_logger(log_dir, fresh=not resuming(args, run)) as logger:
        trainer = Trainer(model, splits, run, recipe, runtime, normalization, config, logger)
        return trainer.run(recipe.epochs, resume=args.resume)


def open_logger(log_dir, fresh):
    """The TensorBoard logger writing to ``log_dir`` (a context manager; None inside for no folder). A ``fresh``
    run (not resumed) hides the folder's earlier events from TensorBoard, so an overwritten run's never mix in."""
    if log_dir is None:
        return contextlib.nullcontext()
    print(f"TensorBoard events: {log_dir} (view: tensorboard --logdir {log_dir.parent})")
    return TensorBoardLogger(log_dir, hide_earlier=fresh, explain_pixels=explain_pixels)


if __name__ == "__main__":
    sys.exit(main())
