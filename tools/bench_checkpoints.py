"""Measure what writing checkpoints costs a training run, for each --checkpoint-interval.

Starts ``--parallel`` train_main.py runs at once (as recipe_gpu.sh does), once per interval,
and prints one table row per interval: the runs' mean number of new best epochs (each of
which writes both checkpoints whatever the interval), their mean process wall time per
epoch, their training + evaluation time per epoch (the JSON's epoch_seconds) and the
difference, which is start-up plus writing checkpoints and metrics. The dataset is decoded
into the cache first, so no row pays for decoding. A run that fails stops the benchmark with
its command and the end of its output.

    python tools/bench_checkpoints.py DATASET -m timm:resnet18 -e 20 --parallel 6     # on a GPU
    python tools/bench_checkpoints.py DATASET -e 3 --parallel 1                       # a CPU try-out
"""
import argparse
import json
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]  # the toolkit, one folder up


def train_command(dataset, work, name, model, epochs, interval, seed, device):
    """A train_main.py command writing to ``work/name``, with the dataset cache in ``work/cache``."""
    return [sys.executable, str(ROOT / "train_main.py"), "-d", str(dataset), "-m", model, "-e", str(epochs),
            "--patience", "0", "--seed", str(seed), "--checkpoint-interval", str(interval),
            "--cache-dir", str(work / "cache"), "--out-dir", str(work / name / "out"),
            "--checkpoint-dir", str(work / name / "checkpoints"), *(["--device", device] if device else [])]


def run_at_once(commands, logs):
    """Run the commands in parallel, each one's output to its log file; returns each one's wall seconds."""
    processes, walls = [], [None] * len(commands)
    for command, log in zip(commands, logs):
        with open(log, "w") as output:
            processes.append((time.perf_counter(), subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)))
    while None in walls:
        for index, (start, process) in enumerate(processes):
            if walls[index] is None and process.poll() is not None:
                walls[index] = time.perf_counter() - start
                if process.returncode:
                    for _, other in processes:
                        other.kill()
                        other.wait()
                    sys.exit(f"a training run failed (exit {process.returncode}): {' '.join(commands[index])}\n"
                             f"the end of its output:\n{Path(logs[index]).read_text()[-2000:]}")
        time.sleep(0.05)
    return walls


def new_bests(history):
    """How many epochs improved the selection metric (each one writes both checkpoints)."""
    best, count = -math.inf, 0
    for value in history[history["selection_metric"]]:
        if value is not None and value > best:
            best, count = value, count + 1
    return count


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
    if args.parallel < 1 or args.epochs < 1:
        parser.error("--parallel and --epochs must be >= 1")
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        run_at_once([train_command(args.dataset, work, "warmup", "SimpleNet", 1, 0, 0, args.device)],
                    [work / "warmup.log"])  # fills the cache
        rows = []
        for interval in args.intervals:
            names = [f"interval{interval:g}_seed{seed}" for seed in range(args.parallel)]
            walls = run_at_once([train_command(args.dataset, work, name, args.model, args.epochs, interval, seed,
                                               args.device) for seed, name in enumerate(names)],
                                [work / f"{name}.log" for name in names])
            histories = [json.loads(next((work / name / "out").glob("*.json")).read_text()) for name in names]
            wall = sum(walls) / len(walls) / args.epochs
            busy = sum(sum(history["epoch_seconds"]) for history in histories) / len(histories) / args.epochs
            bests = sum(new_bests(history) for history in histories) / len(histories)
            rows.append(f"| {interval:g} | {args.parallel} | {args.epochs} | {bests:.1f} | {wall:.2f} | {busy:.2f} | "
                        f"{wall - busy:.2f} | {100 * (wall - busy) / wall:.0f}% |")
    print(f"{args.model} on {args.dataset}, {args.parallel} run(s) at once\n")
    print("| --checkpoint-interval s | runs at once | epochs | new bests per run | wall s/epoch | "
          "train+eval s/epoch | other s/epoch | other share |")
    print("|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
