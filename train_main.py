"""Train a real/fake face detector.

    python train_main.py -m SimpleNet -d demo_fakes -o Adam --lr 0.001 -b 32 -e 5

``-d`` is a dataset name under ``--data-root`` (default ``data``) or a path; it must hold
``train/``, ``val/`` and ``test/``, each with ``real/`` and ``fake/``. Writes
``out/{dataset}_{model}_{optimizer}.json`` (per-epoch metrics and the run's config),
``checkpoints/{dataset}_{model}_{optimizer}.pt`` (best epoch on validation) and
``..._last.pt`` (everything needed for ``--resume``).
"""
import argparse
import hashlib
import sys
import time
from pathlib import Path

import torch

from faces_dataset import DatasetError, FacesDataset, decode_dataset, place_images
from fileio import CheckpointError
from models import MODEL_NAMES, NORMALIZATION, build_model, precision_settings
from trainer import (SELECTION_METRICS, LoggingParameters, NonFiniteLossError, Trainer, format_history_table,
                     output_paths, seed_everything)
from xception import WeightsUnavailableError

SPLITS = ("train", "val", "test")
OPTIMIZERS = ("SGD", "Adam")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-m", "--model", default="SimpleNet", choices=MODEL_NAMES, help="detector (default: SimpleNet)")
    parser.add_argument("-d", "--dataset", default="demo_fakes",
                        help="dataset name under --data-root, or a path to a dataset folder (default: demo_fakes)")
    parser.add_argument("-o", "--optimizer", default="SGD", choices=OPTIMIZERS, help="optimizer (default: SGD)")
    parser.add_argument("--lr", type=float, default=0.001, help="learning rate (default: 0.001)")
    parser.add_argument("--momentum", type=float, default=0.9, help="SGD momentum (default: 0.9)")
    parser.add_argument("-b", "--batch_size", type=int, default=128, help="batch size (default: 128)")
    parser.add_argument("-e", "--epochs", type=int, default=2, help="epochs (default: 2)")
    parser.add_argument("--data-root", default="data", help="folder holding named datasets (default: data)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument("--deterministic", action="store_true", help="use deterministic algorithms (slower)")
    parser.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda when available)")
    parser.add_argument("--workers", type=int, default=None,
                        help="decoding threads, or DataLoader workers with --no-cache (default: CPU cores; 0 with --no-cache)")
    parser.add_argument("--weights", default=None, help="local ImageNet Xception weights file (timm or Cadene layout)")
    parser.add_argument("--no-pretrained", action="store_true", help="XceptionBased from random weights")
    parser.add_argument("--selection-metric", default="val_acc", choices=SELECTION_METRICS,
                        help="validation metric that picks the best checkpoint (default: val_acc)")
    parser.add_argument("--no-cache", action="store_true",
                        help="decode images with PIL on every access (the course's per-item path) instead of once")
    parser.add_argument("--cache-dir", default=".cache", help="where decoded splits are cached (default: .cache)")
    parser.add_argument("--strict", action="store_true", help="fail on the first unreadable image instead of skipping it")
    parser.add_argument("--amp", choices=("auto", "bf16", "off"), default="auto",
                        help="bf16 autocast + channels_last on CUDA: auto = on for XceptionBased only (default: auto)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model")
    parser.add_argument("--resume", action="store_true", help="continue the run from its last checkpoint")
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier run's results")
    parser.add_argument("--out-dir", default="out", help="metrics JSON folder (default: out)")
    parser.add_argument("--checkpoint-dir", default="checkpoints", help="checkpoint folder (default: checkpoints)")
    args = parser.parse_args(argv)
    if not args.lr > 0:
        parser.error(f"--lr must be > 0 (got {args.lr})")
    if args.epochs < 1:
        parser.error(f"--epochs must be >= 1 (got {args.epochs})")
    if args.batch_size < 1:
        parser.error(f"--batch_size must be >= 1 (got {args.batch_size})")
    if args.workers is not None and args.workers < 0:
        parser.error(f"--workers must be >= 0 (got {args.workers})")
    args.dataset_path = resolve_dataset(args.dataset, args.data_root)
    if args.dataset_path is None:
        parser.error(f"dataset {args.dataset!r} not found as a path or under --data-root {args.data_root!r}; "
                     "run 'python demo_data.py' for the demo datasets or pass the folder that holds train/ val/ test/")
    missing = [split for split in SPLITS if not (args.dataset_path / split).is_dir()]
    if missing:
        parser.error(f"{args.dataset_path}: missing split folder(s) {', '.join(missing)}; "
                     "a dataset holds train/, val/ and test/, each with real/ and fake/")
    if args.device is None:
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    elif args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error(f"--device {args.device}: CUDA is not available on this machine; use --device cpu")
    if args.weights is not None and not Path(args.weights).is_file():
        parser.error(f"--weights {args.weights}: file not found")
    logging_parameters = LoggingParameters(args.model, args.dataset_path.name, args.optimizer, optimizer_params(args))
    existing = [path for path in output_paths(logging_parameters, args.out_dir, args.checkpoint_dir) if path.exists()]
    if existing and not (args.overwrite or args.resume):
        parser.error(f"{existing[0]} exists from an earlier run; pass --resume to continue it "
                     "or --overwrite to replace it (or choose another --out-dir/--checkpoint-dir)")
    return args, logging_parameters


def resolve_dataset(name, data_root):
    """The dataset folder: ``name`` itself when it is a folder, else ``data_root/name``; None if neither."""
    for candidate in (Path(name), Path(data_root) / name):
        if candidate.is_dir():
            return candidate
    return None


def optimizer_params(args):
    return {"lr": args.lr, "momentum": args.momentum} if args.optimizer == "SGD" else {"lr": args.lr}


def build_optimizer(name, parameters, params):
    if name == "SGD":
        return torch.optim.SGD(parameters, lr=params["lr"], momentum=params["momentum"])
    return torch.optim.Adam(parameters, lr=params["lr"])


def load_splits(args):
    """The train/val/test splits: decoded once (cached) by default, per-item with --no-cache.
    Validation and test may hold one class only (their AUC is then reported as undefined)."""
    splits = []
    for split in SPLITS:
        dataset = FacesDataset(args.dataset_path / split, require_both_classes=split == "train")
        if not args.no_cache:
            dataset = decode_dataset(dataset, args.cache_dir, args.workers, args.strict)
            where = place_images(dataset, args.device)
            print(f"{split}: {len(dataset)} images decoded, held in {where}")
        else:
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


def main(argv=None):
    args, logging_parameters = parse_args(argv)
    seed_everything(args.seed, args.deterministic)
    autocast_dtype, channels_last = precision_settings(args.model, args.device, args.amp)
    config = {key: (str(value) if isinstance(value, Path) else value) for key, value in vars(args).items()}
    config.update(autocast=str(autocast_dtype) if autocast_dtype else "off", channels_last=channels_last)
    try:
        train, val, test = load_splits(args)
        model = build_model(args.model, pretrained=not args.no_pretrained, weights=args.weights)
        trainer = Trainer(model, build_optimizer(args.optimizer, model.parameters(), logging_parameters.optimizer_params),
                          torch.nn.CrossEntropyLoss(), args.batch_size, train, val, test, device=args.device,
                          normalization=NORMALIZATION[args.model], autocast_dtype=autocast_dtype,
                          channels_last=channels_last, compile_model=args.compile,
                          workers=args.workers if args.no_cache and args.workers else 0, seed=args.seed,
                          selection_metric=args.selection_metric, out_dir=args.out_dir,
                          checkpoint_dir=args.checkpoint_dir, config=config)
        start = time.perf_counter()
        history = trainer.run(args.epochs, logging_parameters, resume=args.resume)
    except (DatasetError, CheckpointError, NonFiniteLossError, WeightsUnavailableError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    json_path, best_path, last_path = output_paths(logging_parameters, args.out_dir, args.checkpoint_dir)
    print(f"\n{logging_parameters.run_name} on {args.device}, {time.perf_counter() - start:.0f}s "
          f"(* = best epoch on {args.selection_metric}):\n")
    print(format_history_table(history))
    print(f"\nmetrics: {json_path}\nbest checkpoint: {best_path}\nlast checkpoint: {last_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
