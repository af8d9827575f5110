"""The flags of the analysis scripts (report.py, numerical_analysis.py, saliency_map.py, ...): the run they
name as train_main.py does, where figures go, what is evaluated; checked in one place, with each script's
errors printed as one line (``exits_on_error``)."""
from fakedetect.analysis.common import AnalysisError
from fakedetect.cli import common
from fakedetect.cli.common import add_device_flag, add_run_flags, check_run_flags, resolve_device
from fakedetect.data.folders import SPLITS, find_dataset
from fakedetect.io.files import check_output_path

exits_on_error = common.exits_on_error(AnalysisError)  # decorates each analysis script's main


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
