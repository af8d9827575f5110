"""Measure training at scale: images per second and peak host memory for N and 4N training images, with the
decoded split held in host memory (the old way) or memory-mapped from the cache (now), on 1 and 2 processes.

Each row is a fresh process (2 under torchrun) that decodes the splits (cached once), trains ``--epochs``
epochs of ``--model`` and reports the last epoch's training rate and the peak, over the whole run, of its
private memory (RssAnon: what cannot be given back) and of its resident set (VmHWM: private memory plus the
mapped cache pages the kernel may drop). With ``--memory-limit-gib`` one more row trains 4N memory-mapped
inside a cgroup (v1, as root) whose limit is below the 4N pixels: a dataset larger than the memory it may use.
The 4N split repeats the N generated images under other names (the pixels are what costs memory).

    python tools/bench_scale.py --images 3000 --memory-limit-gib 1.5                 # CPU, about 40 minutes
    python tools/bench_scale.py --images 20000 --model XceptionBased --batch-size 128 --device cuda \\
        --placements device mapped --processes 1 --epochs 2                           # GPU: resident vs mapped
"""
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch

from fakedetect.cli.common import ArgumentParser
from fakedetect.config.recipe import recipe_named
from fakedetect.data import demo as demo_data
from fakedetect.data.cache import IMAGE_BYTES, decode_dataset, place_images
from fakedetect.data.folders import SPLITS, FacesDataset
from fakedetect.data.normalization import SYMMETRIC_NORMALIZATION
from fakedetect.io.files import write_json
from fakedetect.io.runs import Run
from fakedetect.models.precision import precision_settings
from fakedetect.models.registry import build_model
from fakedetect.train import distributed
from fakedetect.train.trainer import Runtime, Trainer

EVAL_IMAGES = 64  # per class, in val and test: the epoch is the training split's


class PeakMemory:
    """Samples this process's RssAnon every 20 ms on a thread; ``peak_anon_mib`` and ``peak_rss_mib`` (VmHWM)."""

    def __init__(self):
        self.peak_anon_kib, self.running = 0, True
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()

    @staticmethod
    def _status(key):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
        return 0

    def _sample(self):
        while self.running:
            self.peak_anon_kib = max(self.peak_anon_kib, self._status("RssAnon"))
            time.sleep(0.02)

    def stop(self):
        self.running = False
        self.thread.join()
        self.peak_anon_kib = max(self.peak_anon_kib, self._status("RssAnon"))
        return {"peak_anon_mib": self.peak_anon_kib / 1024, "peak_rss_mib": self._status("VmHWM") / 1024}


def make_datasets(folder, images, workers):
    """``{folder}/n`` with ``images`` training images (half real) and ``{folder}/4n``, the same files four times."""
    small = folder / "n"
    if not (small / "test").is_dir():
        counts = {"train": (images // 2, images - images // 2), "val": (EVAL_IMAGES,) * 2, "test": (EVAL_IMAGES,) * 2}
        demo_data.write_dataset(small, "demo_fakes", counts, workers=workers)
    large = folder / "4n"
    if not (large / "test").is_dir():
        for split in SPLITS:
            for label in ("real", "fake"):
                (large / split / label).mkdir(parents=True, exist_ok=True)
                for path in sorted((small / split / label).glob("*.png")):
                    for copy in range(4 if split == "train" else 1):
                        os.link(path, large / split / label / f"{copy}_{path.name}")
    return {"N": small, "4N": large}


def worker(args):
    """One training run (one rank of it under torchrun); prints its measurements as one JSON line."""
    memory = PeakMemory()
    ranks = distributed.from_environment()
    device = distributed.device_of(ranks, args.device)
    torch.manual_seed(0)
    with distributed.process_group(ranks, device):
        with distributed.main_rank_first(ranks):  # rank 0 decodes first, as train_main does
            splits = [decode_dataset(FacesDataset(Path(args.data) / split), args.cache_dir, progress=False)
                      for split in SPLITS]
        for split in splits:
            if args.placement == "memory":  # the whole split read into host memory, as before the memory map
                split.images, split.mapped_from = split.images.clone(), None
            elif args.placement == "device":
                place_images(split, device)
        model = build_model(args.model, pretrained=False)
        autocast_dtype, channels_last = precision_settings(args.model, str(device), "auto")
        run = Run(args.model, "bench", "AdamW", out_dir=Path(args.work) / "out", checkpoint_dir=Path(args.work) / "ck")
        recipe = recipe_named("improved", batch_size=args.batch_size, epochs=args.epochs, patience=0)
        runtime = Runtime(device=str(device), autocast_dtype=autocast_dtype, channels_last=channels_last,
                          progress=False, ranks=ranks, checkpoint_interval=1e9)
        history = Trainer(model, splits, run, recipe, runtime, SYMMETRIC_NORMALIZATION).run(args.epochs)
    print(json.dumps({"rank": ranks.rank, "images_per_s": history["train_images_per_s"][-1],
                      "train_images": len(splits[0]), **memory.stop()}))


def run_row(args, data, placement, processes, cgroup=None):
    """Start one measured run: (the per-rank JSON lines it printed, its exit code)."""
    work = Path(tempfile.mkdtemp(prefix="bench_scale_", dir=args.work_dir))
    flags = ["--worker", "--data", str(data), "--placement", placement, "--model", args.model, "--device",
             args.device, "--batch-size", str(args.batch_size), "--epochs", str(args.epochs),
             "--cache-dir", str(args.work_dir / "cache"), "--work", str(work)]
    command = [sys.executable, __file__, *flags]
    if processes > 1:
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
                   __file__, *flags]
    environment = {**os.environ, "OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 1) // processes))}
    joined = (lambda: Path(cgroup, "cgroup.procs").write_text(str(os.getpid()))) if cgroup else None
    done = subprocess.run(command, capture_output=True, text=True, env=environment, preexec_fn=joined)
    rows = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0:
        print(f"  exit {done.returncode}: {' '.join(done.stderr.strip().splitlines()[-3:])}")
    return rows, done.returncode


def summary(label, placement, processes, outcome):
    rows, code = outcome
    if code != 0 or not rows:
        ending = "killed by the kernel (out of memory)" if code in (-9, 137) else f"failed (exit {code})"
        return {"dataset": label, "placement": placement, "processes": processes, "trained": False, "ending": ending}
    return {"dataset": label, "placement": placement, "processes": processes, "trained": True,
            "train_images": rows[0]["train_images"], "pixels_gib": rows[0]["train_images"] * IMAGE_BYTES / 2**30,
            "images_per_s": rows[0]["images_per_s"], "peak_anon_mib": sum(row["peak_anon_mib"] for row in rows),
            "peak_rss_mib": sum(row["peak_rss_mib"] for row in rows)}


def drop_page_cache():
    """Empty the page cache (as root), so that the limited run reads the cache from disk and its pages count
    against its own limit, not the cgroup of the runs that read them before; False where it cannot."""
    try:
        os.sync()
        Path("/proc/sys/vm/drop_caches").write_text("1")
        return True
    except OSError:
        return False


def limited_cgroup(limit_gib):
    """A cgroup v1 memory group limited to ``limit_gib`` (None where this machine has none to make)."""
    base = Path("/sys/fs/cgroup/memory")
    if not (base / "cgroup.procs").exists():
        return None
    group = base / f"bench_scale_{os.getpid()}"
    try:
        group.mkdir()
        (group / "memory.limit_in_bytes").write_text(str(int(limit_gib * 2**30)))
    except OSError:
        return None
    return group


def print_table(results, args):
    device = torch.cuda.get_device_name() if args.device.startswith("cuda") else f"CPU ({os.cpu_count()} cores)"
    print(f"\n{args.model}, batch {args.batch_size}, last of {args.epochs} epoch(s), {device}\n")
    print("| training images | pixels | held | processes | images/s | peak private memory | peak resident (with mapped pages) |")
    print("|---|---|---|---|---|---|---|")
    for row in results:
        if not row["trained"]:
            print(f"| {row['dataset']} | | {row['placement']} | {row['processes']} | {row['ending']} | | |")
            continue
        print(f"| {row['dataset']} ({row['train_images']}) | {row['pixels_gib']:.2f} GiB | {row['placement']} | "
              f"{row['processes']} | {row['images_per_s']:.0f} | {row['peak_anon_mib']:.0f} MiB | "
              f"{row['peak_rss_mib']:.0f} MiB |")
    for placement in args.placements:
        for processes in args.processes:
            pair = {row["dataset"]: row for row in results if row["placement"] == placement
                    and row["processes"] == processes and row.get("limit_gib") is None and row["trained"]}
            if {"N", "4N"} <= pair.keys():
                print(f"{placement}, {processes} process(es): peak private memory 4N / N = "
                      f"{pair['4N']['peak_anon_mib'] / pair['N']['peak_anon_mib']:.2f}")


def main(argv=None):
    parser = ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=3000, help="N, the smaller training split (default: 3000)")
    parser.add_argument("--model", default="SimpleNet")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--placements", nargs="+", default=["memory", "mapped"], choices=("memory", "mapped", "device"),
                        help="memory: the split read into host memory; mapped: memory-mapped from the cache; "
                             "device: moved to the GPU whole")
    parser.add_argument("--processes", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--memory-limit-gib", type=float, default=None,
                        help="also train 4N memory-mapped inside a cgroup of this memory limit (below 4N's pixels)")
    parser.add_argument("--limited-only", action="store_true", help="only the --memory-limit-gib rows")
    parser.add_argument("--work-dir", type=Path, default=None, help="where the data and cache go (default: a temp dir)")
    parser.add_argument("--json", default=None, help="also write the rows to this JSON file")
    parser.add_argument("--worker", action="store_true", help="(internal) one measured run")
    parser.add_argument("--data"), parser.add_argument("--placement"), parser.add_argument("--cache-dir")
    parser.add_argument("--work")
    args = parser.parse_args(argv)
    if args.worker:
        return worker(args)
    args.work_dir = args.work_dir or Path(tempfile.mkdtemp(prefix="bench_scale_"))
    datasets = make_datasets(args.work_dir, args.images, None)
    results = []
    for label, data in ({} if args.limited_only else datasets).items():
        for placement in args.placements:
            for processes in args.processes:
                print(f"{label}: {placement}, {processes} process(es)...", flush=True)
                results.append(summary(label, placement, processes, run_row(args, data, placement, processes)))
    if args.memory_limit_gib:
        group = limited_cgroup(args.memory_limit_gib)
        if group is None:
            print("note: no cgroup v1 memory controller to limit a run with (needs root); the limited row is skipped")
        else:
            for placement in ("mapped", "memory"):
                if not drop_page_cache():
                    print("note: the page cache could not be emptied (needs root): pages read by earlier runs "
                          "do not count against the limit")
                print(f"4N under a {args.memory_limit_gib:g} GiB limit: {placement}...", flush=True)
                row = summary("4N", placement, 1, run_row(args, datasets["4N"], placement, 1, group))
                row.update(limit_gib=args.memory_limit_gib, dataset=f"4N, {args.memory_limit_gib:g} GiB limit")
                results.append(row)
            group.rmdir()
    print_table(results, args)
    if args.json:
        write_json(args.json, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
