"""CPU speed of each detector as PyTorch eager, TorchScript and onnxruntime (export.py's files).

    python tools/bench_export.py                      # the built-in models, batches 1 and 16, 256x256
    python tools/bench_export.py --models SimpleNet --iterations 3

For each model a random-weight checkpoint is exported with export.py to both formats; each
runtime then scores random uint8 256x256 images: eager as predict.py does with the checkpoint
(normalize, network, softmax), TorchScript and onnxruntime through the exported file.
Prints images per second (after two warm-up batches, the fastest of ``--iterations`` timed
batches, the runtimes taking turns) as a Markdown table, as in docs/performance.md. All use
``--threads``.
"""
import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import torch  # noqa: E402

from fakedetect.cli.common import model_name
from fakedetect.config.recipe import IMAGE_SIZE
from fakedetect.io.files import save_checkpoint
from fakedetect.models.registry import build_model, model_normalization
from fakedetect.serve import export as serve_export
from fakedetect.serve import predict as serve_predict

BUILT_IN = ("SimpleNet", "XceptionBased", "timm:resnet18", "patch:resnet18")
RUNTIMES = ("PyTorch eager", "TorchScript", "onnxruntime")


def write_random_checkpoint(path, name):
    """A random-weight checkpoint of ``name`` with the keys train_main.py's best checkpoint has."""
    model = build_model(name, pretrained=False)
    normalization = ((0.5,) * 3, (0.25,) * 3) if name == "SimpleNet" else model_normalization(name, model)
    save_checkpoint(path, {"model": model.state_dict(), "model_name": name, "dataset": "random", "epoch": 0,
                           "val_acc": None, "val_auc": None, "threshold": 0.5,
                           "normalization": [list(values) for values in normalization], "config": {}})


def scorers(name, folder, threads):
    """{runtime: P(fake) of a uint8 batch} for a random-weight ``name`` exported under ``folder``."""
    import onnxruntime
    checkpoint = folder / f"{name.replace(':', '_')}.pt"
    write_random_checkpoint(checkpoint, name)
    serve_export.export_checkpoint(checkpoint, folder / "model.onnx", "onnx")
    serve_export.export_checkpoint(checkpoint, folder / "model.torchscript.pt", "torchscript")
    model, loaded = serve_predict.load_trained_model(checkpoint)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    session = onnxruntime.InferenceSession(str(folder / "model.onnx"), options, providers=["CPUExecutionProvider"])
    scripted = serve_export.without_deprecation_notices(lambda: torch.jit.load(str(folder / "model.torchscript.pt")))
    return {"PyTorch eager": lambda images: serve_predict.fake_probabilities([(model, loaded["normalization"])], images, "cpu"),
            "TorchScript": lambda images: scripted(images),
            "onnxruntime": lambda images: session.run(None, {"images": images.numpy()})[0]}


@torch.inference_mode()
def images_per_second(scores, batch_size, iterations):
    """{runtime: images per second} of ``scores`` ({runtime: scorer}) on a random uint8 batch,
    from the fastest of ``iterations`` timed batches each: on a shared CPU, the one least disturbed
    by other jobs. The runtimes take turns batch by batch, so that they share the disturbances."""
    images = torch.randint(0, 256, (batch_size, 3, IMAGE_SIZE, IMAGE_SIZE), dtype=torch.uint8)
    for score in scores.values():
        for _ in range(2):  # warm-up: first-call allocations; TorchScript optimizes its graph after profiling 2 runs
            score(images)
    seconds = {runtime: [] for runtime in scores}
    for _ in range(iterations):
        for runtime, score in scores.items():
            start = time.perf_counter()
            score(images)
            seconds[runtime].append(time.perf_counter() - start)
    return {runtime: batch_size / min(times) for runtime, times in seconds.items()}


def format_table(rows, batch_sizes):
    """Markdown table: one row per model and runtime, images/s per batch size, speed-up over eager."""
    header = ["model", "runtime", *(f"batch {size} (img/s)" for size in batch_sizes),
              *(f"x eager, batch {size}" for size in batch_sizes)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, runtime, speeds, eager in rows:
        cells = [name, runtime, *(f"{speed:,.1f}" for speed in speeds),
                 *(f"{speed / base:.2f}" for speed, base in zip(speeds, eager))]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", type=model_name, default=list(BUILT_IN), help="detectors to time")
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 16], help="batch sizes (default: 1 16)")
    parser.add_argument("--iterations", type=int, default=5, help="timed batches per measurement (default: 5)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(),
                        help="CPU threads of torch and onnxruntime (default: torch's, here %(default)s)")
    args = parser.parse_args(argv)
    if args.iterations < 1 or args.threads < 1 or min(args.batch_sizes) < 1:
        parser.error("--iterations, --threads and --batch-sizes must be >= 1")
    import onnxruntime
    torch.set_num_threads(args.threads)
    rows = []
    for name in args.models:
        with tempfile.TemporaryDirectory() as folder:
            scores = scorers(name, Path(folder), args.threads)
            speeds = [images_per_second(scores, size, args.iterations) for size in args.batch_sizes]
        rows += [(name, runtime, [speed[runtime] for speed in speeds], [speed["PyTorch eager"] for speed in speeds])
                 for runtime in RUNTIMES]
        print(f"timed {name}", file=sys.stderr)
    print(f"CPU, {args.threads} threads, torch {torch.__version__}, onnxruntime {onnxruntime.__version__}, uint8 "
          f"{IMAGE_SIZE}x{IMAGE_SIZE} input, fastest of {args.iterations} batches; load average at the end "
          f"{os.getloadavg()[0]:.1f}")
    print(format_table(rows, args.batch_sizes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
