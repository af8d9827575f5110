"""The conventions every script follows, in one place.

* The same flags name the same things: ``-m/--model``, ``-d/--dataset``, ``-o/--optimizer``,
  ``--run-name``, ``--data-root``, ``--out-dir``, ``--checkpoint-dir``, ``--device``,
  ``-b/--batch-size``, ``--seed``; a file or folder a script writes is ``--output`` (older
  spellings stay as aliases).
* A usage error (a flag's value) exits 2 with one line: ``prog: error: ...`` and no usage block.
* Bad data, a bad checkpoint or a run that cannot go on exits 1 with one line naming the file
  and the fix: ``error: FILE: what is wrong; what to do``.
"""
import argparse
import functools
import sys

import torch

from fakedetect.config.recipe import DEFAULT_RECIPE, KNOBS, OPTIMIZERS, RECIPES
from fakedetect.data.folders import dataset_name, dataset_not_found, find_dataset
from fakedetect.data.images import DatasetError
from fakedetect.io.files import CheckpointError, WriteError
from fakedetect.io.runs import Run, RunLockedError, run_name_problem
from fakedetect.models.precision import device_problem
from fakedetect.models.registry import model_name_error

ERRORS = (DatasetError, CheckpointError, RunLockedError, WriteError)  # every script's exit-1 errors


class ArgumentParser(argparse.ArgumentParser):
    """argparse with the script's docstring kept as written, and one-line usage errors (exit 2)."""

    def __init__(self, description=None, **kwargs):
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(description=description, **kwargs)

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


def exits_on_error(*errors):
    """Decorate a script's ``main``: the toolkit's errors (and ``errors``) print one line and return 1."""
    def decorate(main):
        @functools.wraps(main)
        def wrapper(argv=None):
            try:
                return main(argv)
            except (*ERRORS, *errors) as error:
                print(f"error: {error}", file=sys.stderr)
                return 1
        return wrapper
    return decorate


def add_model_flag(parser, help_suffix=""):
    parser.add_argument("-m", "--model", default="SimpleNet", type=model_name,
                        help="detector: SimpleNet, XceptionBased, timm:ARCH or patch:ARCH[@STRIDE]"
                             f"{help_suffix} (default: SimpleNet)")


def add_run_flags(parser, training=False):
    """The flags that name a run and its folders (training adds -o from the recipe knobs)."""
    group = parser.add_argument_group("the run")
    add_model_flag(group)
    group.add_argument("-d", "--dataset", default="demo_fakes",
                       help="dataset: a name under --data-root or a path to a folder with train/ val/ test/ "
                            "(default: demo_fakes)")
    group.add_argument("--data-root", default="data", help="folder holding named datasets (default: data)")
    if not training:
        optimizer = RECIPES[DEFAULT_RECIPE]["optimizer"]
        group.add_argument("-o", "--optimizer", default=optimizer, choices=OPTIMIZERS,
                           help=f"optimizer of the run (default: {optimizer}, the default recipe's)")
    group.add_argument("--run-name", default=None, metavar="NAME",
                       help="the run's name, which its files carry (default: {dataset}_{model}_{optimizer}); "
                            "give seeds and grids their own names to share one --out-dir")
    group.add_argument("--out-dir", default="out", help="folder of the runs' metrics JSON (default: out)")
    group.add_argument("--checkpoint-dir", default="checkpoints", help="folder of the checkpoints (default: checkpoints)")
    return group


def add_device_flag(parser):
    parser.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda when available)")


def check_run_flags(parser, args, dataset_path=None, optimizer_params=None):
    """``parser.error`` on a bad --run-name; the ``Run`` the flags name (``dataset_path``: the resolved -d)."""
    if args.run_name is not None and run_name_problem(args.run_name):
        parser.error(f"--run-name {args.run_name!r}: {run_name_problem(args.run_name)}")
    return Run(args.model, dataset_name(dataset_path or args.dataset), args.optimizer, optimizer_params or {},
               name=args.run_name,
               out_dir=args.out_dir, checkpoint_dir=args.checkpoint_dir)


def dataset_folder(parser, name, data_root, flag="-d"):
    """The folder of dataset ``name``, or ``parser.error`` listing the datasets under ``data_root``."""
    folder = find_dataset(name, data_root)
    if folder is None:
        parser.error(f"{flag} {dataset_not_found(name, data_root)}")
    return folder


def model_name(value):
    """argparse type of ``-m``: a name of MODEL_NAMES, ``SeamNet-WxD``, ``timm:ARCH``, ``patch:ARCH[@STRIDE]`` or
    ``seam:ARCH``."""
    error = model_name_error(value)
    if error:
        raise argparse.ArgumentTypeError(f"invalid choice: {value!r}; {error}")
    return value


def resolve_device(device, parser):
    """The ``--device`` value checked, or the default (cuda when available, else cpu); when torch
    does not know it or it is absent, ``parser.error`` with the fix (exit code 2)."""
    if device is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    problem = device_problem(device)
    if problem:
        parser.error(f"--device {device}: {problem}")
    return device


def add_recipe_arguments(group):
    """One flag per knob (default None: unset flags take the recipe's value, see ``apply_recipe``)."""
    for knob in KNOBS:
        flags = [flag for flag in knob.aliases if flag.startswith("-") and len(flag) == 2]
        flags += [knob.flag] + [flag for flag in knob.aliases if flag.startswith("--")]
        helptext = f"{knob.help} (improved: {knob.improved}, course: {knob.course})".replace("%", "%%")
        if knob.type is bool:
            group.add_argument(*flags, dest=knob.name, action=argparse.BooleanOptionalAction, help=helptext)
        else:
            group.add_argument(*flags, dest=knob.name, type=knob.type, choices=knob.choices, help=helptext,
                               metavar=None if knob.choices else knob.name.split("_")[0].upper())
