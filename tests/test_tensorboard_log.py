"""train_main.py --tensorboard: the events written, read back with TensorBoard's own reader."""
import importlib.util
import json

import pytest

from fakedetect.cli import train as train_main

pytest.importorskip("tensorboard", reason="the tensorboard package is not installed (pip install tensorboard)")


def read_events(log_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(log_dir), size_guidance={"scalars": 0, "images": 0})
    events.Reload()
    return events


def test_tensorboard_logs_steps_epochs_and_the_best_epochs_images(tiny_fakes, tmp_path):
    out = tmp_path / "out"
    code = train_main.main(["-d", str(tiny_fakes), "-b", "8", "-e", "2", "--device", "cpu", "--tensorboard",
                            "--run-name", "tb", "--out-dir", str(out), "--checkpoint-dir", str(tmp_path / "ck"),
                            "--cache-dir", str(tmp_path / "cache")])
    assert code == 0
    history = json.loads((out / "tb.json").read_text())
    events = read_events(out / "tb" / "tb")  # the default folder: {out-dir}/tb/{run}
    tags = events.Tags()
    steps = [event.value for event in events.Scalars("step/train_loss")]
    assert len(steps) == 2 * 3  # 24 training images in batches of 8, two epochs
    assert [event.step for event in events.Scalars("step/lr")] == list(range(6))
    assert events.Scalars("step/lr")[0].value < events.Scalars("step/lr")[2].value  # the warm-up epoch climbs
    for tag, key in (("train/loss", "train_loss"), ("val/auc", "val_auc"), ("test/acc", "test_acc"),
                     ("test/balanced_acc", "test_balanced_acc"), ("epoch/epoch_seconds", "epoch_seconds")):
        assert [event.step for event in events.Scalars(tag)] == [1, 2]
        assert [event.value for event in events.Scalars(tag)] == pytest.approx(history[key], rel=1e-6)
    best_epochs = [event.step for event in events.Images("best/roc")]
    assert best_epochs[-1] == history["best_epoch"] and events.Images("best/roc")[-1].width > 100
    if importlib.util.find_spec("pytorch_grad_cam") is not None:
        sample = events.Images("best/grad_cam")[-1]
        assert sample.step == history["best_epoch"] and (sample.width, sample.height) == (4 * 256, 2 * 256)
    else:
        assert "best/grad_cam" not in tags["images"]


def test_tensorboard_is_off_without_the_flag(tiny_run):
    assert not (tiny_run["out_dir"] / "tb").exists()
    assert json.loads(tiny_run["json"].read_text())["config"]["tensorboard"] is None


def test_overwritten_run_hides_the_earlier_events_and_keeps_their_files(tiny_fakes, tmp_path, capsys):
    out = tmp_path / "out"
    command = ["-d", str(tiny_fakes), "-b", "8", "--device", "cpu", "--tensorboard", "--run-name", "tb",
               "--out-dir", str(out), "--checkpoint-dir", str(tmp_path / "ck"), "--cache-dir", str(tmp_path / "cache")]
    assert train_main.main(command + ["-e", "2"]) == 0
    log_dir = out / "tb" / "tb"
    earlier = sorted(log_dir.iterdir())
    assert train_main.main(command + ["-e", "1", "--overwrite"]) == 0
    assert set(earlier) < set(log_dir.iterdir())  # nothing deleted: a second file beside the first
    events = read_events(log_dir)
    assert [event.step for event in events.Scalars("train/loss")] == [1]  # the earlier run's epoch 2 is gone
    assert len(events.Scalars("step/train_loss")) == 3
    assert events.Scalars("train/loss")[0].value == pytest.approx(json.loads((out / "tb.json").read_text())["train_loss"][0],
                                                                  rel=1e-6)


def test_new_run_into_a_folder_of_earlier_events_is_a_usage_error(tiny_fakes, tmp_path, capsys):
    log_dir = tmp_path / "shared_tb"
    log_dir.mkdir()
    (log_dir / "events.out.tfevents.1.host.1.0").write_bytes(b"")
    with pytest.raises(SystemExit) as exit_info:
        train_main.main(["-d", str(tiny_fakes), "--device", "cpu", "--tensorboard", str(log_dir),
                         "--out-dir", str(tmp_path / "out"), "--checkpoint-dir", str(tmp_path / "ck")])
    assert exit_info.value.code == 2
    message = capsys.readouterr().err.strip().splitlines()[-1]
    assert str(log_dir) in message and "--overwrite" in message and "events.out.tfevents.1.host.1.0" in message
    assert not (tmp_path / "out").exists()
