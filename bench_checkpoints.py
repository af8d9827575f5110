"""Measure what writing checkpoints costs a training run, for each --checkpoint-interval.

Starts ``--parallel`` train_main.py runs at once (as recipe_gpu.sh does), once per interval,
and prints one table row per interval: the runs' mean process wall time per epoch, their
training + evaluation time per epoch (the JSON's epoch_seconds) and the difference, which is
start-up plus writing checkpoints and metrics. The dataset is decoded into the cache first,
so no row pays for decoding.

    python bench_checkpoints.py DATASET -m timm:resnet18 -e 25 --parallel 6     # on a GPU
    python bench_checkpoints.py DATASET -e 3 --parallel 1                       # a CPU try-out
"""
import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent


def train_command(dataset, work, name, model, epochs, interval, seed, device):
    """A train_main.py command writing to ``work/name``, with the dataset cache in ``work/cache``."""
    return [sys.executable, str(ROOT / "train_main.py"), "-d", str(dataset), "-m", model, "-e", str(epochs),
            "--patience", "0", "--seed", str(seed), "--checkpoint-interval", str(interval),
            "--cache-dir", str(work / "cache"), "--out-dir", str(work / name / "out"),
            "--checkpoint-dir", str(work / name / "checkpoints"), *(["--device", device] if device else [])]


def run_at_once(commands):
    """Run the commands in parallel; returns each one's wall seconds."""
    starts, processes = [], []
    for command in commands:
        starts.append(time.perf_counter())
        processes.append(subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True))
    walls = []
    for start, process in zip(starts, processes):
        _, errors = process.communicate()
        if process.returncode:
            sys.exit(f"a training run failed (exit {process.returncode}):\n{errors[-2000:]}")
        walls.append(time.perf_counter() - start)
    return walls


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", help="a dataset folder with train/, val/ and test/")
    parser.add_argument("-m", "--model", default="SimpleNet")
    parser.add_argument("-e", "--epochs", type=int, default=3)
    parser.add_argument("--parallel", type=int, default=1, help="runs at once (default: 1)")
    parser.add_argument("--intervals", type=float, nargs="+", default=[0.0, 60.0],
                        help="--checkpoint-interval values to compare, in seconds (default: 0 60)")
    parser.add_argument("--device", default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        run_at_once([train_command(args.dataset, work, "warmup", "SimpleNet", 1, 0, 0, args.device)])  # fills the cache
        rows = []
        for interval in args.intervals:
            names = [f"interval{interval:g}_seed{seed}" for seed in range(args.parallel)]
            walls = run_at_once([train_command(args.dataset, work, name, args.model, args.epochs, interval, seed,
                                               args.device) for seed, name in enumerate(names)])
            compute = [sum(json.loads(next((work / name / "out").glob("*.json")).read_text())["epoch_seconds"])
                       for name in names]
            wall, busy = sum(walls) / len(walls) / args.epochs, sum(compute) / len(compute) / args.epochs
            rows.append(f"| {interval:g} | {args.parallel} | {args.epochs} | {wall:.2f} | {busy:.2f} | "
                        f"{wall - busy:.2f} | {100 * (wall - busy) / wall:.0f}% |")
    print(f"{args.model} on {args.dataset}, {args.parallel} run(s) at once\n")
    print("| --checkpoint-interval s | runs at once | epochs | wall s/epoch | train+eval s/epoch | "
          "other s/epoch | other share |")
    print("|---|---|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
