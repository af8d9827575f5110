"""Shared fixtures: tiny generated datasets and a tiny trained run (CPU, seconds)."""
import errno
import shutil
import subprocess
from pathlib import Path

import pytest

from fakedetect.data import demo as demo_data

TINY_SPLITS = {"train": (12, 12), "val": (6, 6), "test": (6, 6)}


@pytest.fixture(scope="session")
def tiny_fakes(tmp_path_factory):
    """A tiny demo_fakes-style dataset (train 12+12, val 6+6, test 6+6) with masks."""
    return demo_data.write_dataset(tmp_path_factory.mktemp("data") / "tiny_fakes", "demo_fakes", TINY_SPLITS,
                                   workers=1, progress=False)


@pytest.fixture(scope="session")
def tiny_run(tiny_fakes, tmp_path_factory):
    """A 2-epoch SimpleNet run on tiny_fakes: returns dict of paths (dataset, out_dir, checkpoint_dir, json, best, last)."""
    from fakedetect.cli import train as train_main
    work = tmp_path_factory.mktemp("run")
    out_dir, checkpoint_dir = work / "out", work / "checkpoints"
    code = train_main.main(["-m", "SimpleNet", "-d", str(tiny_fakes), "-o", "Adam", "--lr", "0.0005", "-b", "8",
                            "-e", "2", "--device", "cpu", "--out-dir", str(out_dir),
                            "--checkpoint-dir", str(checkpoint_dir), "--cache-dir", str(work / "cache")])
    assert code == 0
    name = "tiny_fakes_SimpleNet_Adam"
    return {"dataset": tiny_fakes, "out_dir": out_dir, "checkpoint_dir": checkpoint_dir,
            "json": out_dir / f"{name}.json", "best": checkpoint_dir / f"{name}.pt",
            "last": checkpoint_dir / f"{name}_last.pt"}


@pytest.fixture
def script_validation_accuracy(monkeypatch):
    """``script(trainer, accuracies)``: the trainer's validation accuracy then follows ``accuracies``, one per epoch."""
    def script(trainer, accuracies):
        accuracies = iter(accuracies)
        real_evaluate = trainer.evaluate

        def scripted(dataset):
            result = real_evaluate(dataset)
            if dataset is trainer.validation_dataset:
                result["accuracy"] = next(accuracies)
            return result
        monkeypatch.setattr(trainer, "evaluate", scripted)
    return script


class SmallFilesystems:
    """Real small filesystems (tmpfs) for disk-full tests: ``mount(name, size_kib)`` gives a folder on
    one, ``fill(folder)`` fills it to the last byte, ``resize(folder, size_kib)`` frees space. Skips the
    test, saying why, where mounting is not allowed (it needs root)."""

    def __init__(self, root):
        self.root, self.mounted = root, []

    def _mount(self, *args):
        if shutil.which("mount") is None:
            pytest.skip("disk-full test needs a small tmpfs, and this machine has no mount command")
        result = subprocess.run(["mount", "-t", "tmpfs", *args], capture_output=True, text=True)
        if result.returncode != 0:
            pytest.skip(f"disk-full test needs a small tmpfs (mount as root): {result.stderr.strip()}")

    def mount(self, name="small_fs", size_kib=256):
        folder = self.root / name
        folder.mkdir()
        self._mount("-o", f"size={size_kib}k", "tmpfs", str(folder))
        self.mounted.append(folder)
        return folder

    def read_only(self, folder):
        self._mount("-o", "remount,ro", "tmpfs", str(folder))

    def resize(self, folder, size_kib):
        self._mount("-o", f"remount,size={size_kib}k", "tmpfs", str(folder))

    @staticmethod
    def fill(folder):
        """Write ``folder/filler`` until the filesystem is full; returns its path (delete it to free the space)."""
        filler = Path(folder) / "filler"
        with open(filler, "wb", buffering=0) as f:
            for size in (2 ** 16, 2 ** 10, 1):
                try:
                    while True:
                        f.write(b"\0" * size)
                except OSError as error:
                    assert error.errno == errno.ENOSPC, error
        return filler

    def unmount_all(self):
        for folder in reversed(self.mounted):
            subprocess.run(["umount", "-l", str(folder)], capture_output=True)


@pytest.fixture
def small_filesystems(tmp_path):
    """SmallFilesystems under ``tmp_path``, unmounted after the test."""
    filesystems = SmallFilesystems(tmp_path)
    yield filesystems
    filesystems.unmount_all()
