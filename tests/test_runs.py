"""runs.py: run names and paths, the file formats, checkpoint checks, resume rules and the run lock."""
import json
import math
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from fakedetect.cli import train as train_main
from fakedetect.io.files import CheckpointError
from fakedetect.io.runs import (FORMAT_VERSION, Run, RunLockedError, check_detector_checkpoint, model_file_name,
                                operating_threshold, run_name_problem)
from fakedetect.models.registry import load_trained_model


def test_patch_stride_stays_in_the_run_file_names():
    assert model_file_name("patch:resnet10t@16") == "patch-resnet10t@16"
    json_path, best_path, _ = Run("patch:resnet10t@16", "tiny_fakes", "AdamW").files
    assert json_path.name == "tiny_fakes_patch-resnet10t@16_AdamW.json"
    assert best_path.name == "tiny_fakes_patch-resnet10t@16_AdamW.pt"


def test_the_default_name_and_every_path_of_a_run():
    run = Run("timm:resnet18", "demo_fakes", "AdamW", out_dir="o", checkpoint_dir="c")
    assert run.name == "demo_fakes_timm-resnet18_AdamW"
    assert run.files == (Path("o/demo_fakes_timm-resnet18_AdamW.json"), Path("c/demo_fakes_timm-resnet18_AdamW.pt"),
                         Path("c/demo_fakes_timm-resnet18_AdamW_last.pt"))
    assert run.lock_path == Path("c/.demo_fakes_timm-resnet18_AdamW.lock")
    named = Run("SimpleNet", "demo_fakes", "AdamW", name="seed1")
    assert named.best_path == Path("checkpoints/seed1.pt") and named.json_path == Path("out/seed1.json")
    assert named.figure_prefix() == "seed1"
    assert named.figure_prefix("other", "val") == "seed1_on_other_val"
    assert named.figure_prefix("demo_fakes") == "seed1"


@pytest.mark.parametrize("name", ["../up", "a/b", ".hidden", "", "x y", "seed_last"])
def test_run_names_that_cannot_name_files_are_refused(name):
    assert run_name_problem(name)


@pytest.mark.parametrize("name", ["seed1", "sg_resnet18@16_s2", "A-b.c+d=e"])
def test_ordinary_run_names_are_accepted(name):
    assert run_name_problem(name) is None


def detector(**changes):
    checkpoint = {"model": {"w": torch.zeros(1)}, "model_name": "SimpleNet", "normalization": [[0.5] * 3, [0.5] * 3],
                  "threshold": 0.4, "epoch": 3}
    return {**checkpoint, **changes}


@pytest.mark.parametrize("changes, message", [
    ({"normalization": None}, "its 'normalization' is None, not [[3 means], [3 positive stds]]"),
    ({"normalization": "symmetric"}, "its 'normalization' is 'symmetric'"),
    ({"normalization": [[0.5] * 3, [0.0] * 3]}, "its 'normalization' is [[0.5, 0.5, 0.5], [0.0, 0.0, 0.0]]"),
    ({"model": "weights"}, "its 'model' is not a state dict"),
    ({"model_name": 3}, "its 'model_name' is 3, not a model name"),
    ({"threshold": "0.5"}, "its 'threshold' is '0.5', not a number in [0, 1]"),
    ({"threshold": math.nan}, "its 'threshold' is nan"),
    ({"threshold": 1.5}, "its 'threshold' is 1.5"),
    ({"threshold": True}, "its 'threshold' is True"),
    ({"epoch": "3"}, "its 'epoch' is '3', not an epoch number"),
])
def test_a_detector_checkpoint_with_an_odd_value_is_one_line_naming_it(changes, message):
    with pytest.raises(CheckpointError, match=re.escape(f"ck.pt: {message}") + ".*; the fix$"):
        check_detector_checkpoint(detector(**changes), "ck.pt", "the fix")


def test_a_detector_checkpoint_missing_a_key_names_the_key():
    checkpoint = detector()
    del checkpoint["normalization"]
    with pytest.raises(CheckpointError, match=re.escape("ck.pt: not a detector checkpoint of this toolkit "
                                                        "(no normalization); the fix")):
        check_detector_checkpoint(checkpoint, "ck.pt", "the fix")
    assert check_detector_checkpoint(detector(threshold=None), "ck.pt", "fix")["threshold"] is None
    assert operating_threshold(detector(threshold=None)) == 0.5 and operating_threshold(detector()) == 0.4


def test_the_resume_state_is_refused_where_a_detector_checkpoint_is_meant():
    with pytest.raises(CheckpointError, match=re.escape("the resume state of a run (for train_main.py --resume), "
                                                        "not a detector checkpoint; pass the run's best checkpoint "
                                                        "(r.pt)")):
        check_detector_checkpoint({"model": {}, "optimizer": {}, "history": {}}, "r_last.pt", "fix")


def test_every_file_of_a_run_carries_the_format_version_and_old_files_still_load(tiny_run, tmp_path):
    history = json.loads(tiny_run["json"].read_text())
    best = torch.load(tiny_run["best"], weights_only=True)
    last = torch.load(tiny_run["last"], weights_only=True)
    assert history["format_version"] == best["format_version"] == last["format_version"] == FORMAT_VERSION
    assert history["run_name"] == best["run_name"] == "tiny_fakes_SimpleNet_Adam"
    del best["format_version"], best["run_name"]  # as written before the format had a version
    torch.save(best, tmp_path / "v1.pt")
    model, checkpoint = load_trained_model(tmp_path / "v1.pt")
    assert checkpoint["epoch"] == best["epoch"] and not model.training


def sleeping_process():
    """A live process of this host other than this one (killed by the caller)."""
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])


def write_lock(path, pid):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"pid": pid, "host": socket.gethostname(), "started": "2026-12-01 10:00:00"}))


def test_a_run_held_by_a_live_process_is_refused_and_a_dead_ones_lock_is_taken_over(tmp_path):
    run = Run("SimpleNet", "toy", "Adam", checkpoint_dir=tmp_path)
    other = sleeping_process()
    try:
        write_lock(run.lock_path, other.pid)
        with pytest.raises(RunLockedError, match=re.escape(f"run toy_SimpleNet_Adam is already running (pid {other.pid} "
                                                           f"on {socket.gethostname()}, since 2026-12-01 10:00:00; "
                                                           f"lock {run.lock_path}); wait for it to end")):
            with run.lock():
                pass
    finally:
        other.kill()
        other.wait()
    with run.lock():  # its process is gone: the lock is stale
        assert json.loads(run.lock_path.read_text())["pid"] == os.getpid()
        with run.lock():  # held again by the same process: no-op
            pass
        assert run.lock_path.exists()
    assert not run.lock_path.exists()


def test_a_lock_held_by_a_killed_process_not_yet_reaped_is_stale(tmp_path):
    run = Run("SimpleNet", "toy", "Adam", checkpoint_dir=tmp_path)
    ended = subprocess.Popen([sys.executable, "-c", "pass"])  # not waited for: a zombie, as a killed torchrun's ranks
    try:
        while Path(f"/proc/{ended.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
            time.sleep(0.01)
        write_lock(run.lock_path, ended.pid)
        with run.lock():
            assert json.loads(run.lock_path.read_text())["pid"] == os.getpid()
    finally:
        ended.wait()


def test_a_lock_file_being_written_is_respected_until_it_is_old(tmp_path):
    run = Run("SimpleNet", "toy", "Adam", checkpoint_dir=tmp_path)
    run.lock_path.write_text("")  # another process created it a moment ago and has not written it yet
    with pytest.raises(RunLockedError, match="a process that is writing it now"):
        with run.lock():
            pass
    old = time.time() - 60
    os.utime(run.lock_path, (old, old))  # left empty by a process killed at that moment
    with run.lock():
        pass


def test_temporaries_are_swept_only_by_the_run_that_holds_the_lock(tiny_fakes, tmp_path, capsys):
    run = Run("SimpleNet", "tiny_fakes", "AdamW", out_dir=tmp_path / "out", checkpoint_dir=tmp_path / "ck")
    run.checkpoint_dir.mkdir()
    being_written = run.checkpoint_dir / f".{run.best_path.name}.abc.tmp"
    being_written.touch()
    other = sleeping_process()
    try:
        write_lock(run.lock_path, other.pid)
        code = train_main.main(["-d", str(tiny_fakes), "-e", "1", "--device", "cpu", "--out-dir", str(run.out_dir),
                                "--checkpoint-dir", str(run.checkpoint_dir), "--cache-dir", str(tmp_path / "cache")])
    finally:
        other.kill()
        other.wait()
    assert code == 1
    assert capsys.readouterr().err.strip().splitlines() == [
        f"error: run tiny_fakes_SimpleNet_AdamW is already running (pid {other.pid} on {socket.gethostname()}, "
        f"since 2026-12-01 10:00:00; lock {run.lock_path}); wait for it to end or choose another --run-name"]
    assert being_written.exists() and not run.json_path.exists()
