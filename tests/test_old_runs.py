"""A run written before the toolkit became the fakedetect package still loads and resumes.

tests/fixtures/old_run holds the files of a SeamNet-2x1 run on a tiny_fakes dataset written by commit
e4ece33 (the last of the flat modules): its run JSON and YAML config (out/) and its best and last checkpoints
(checkpoints/), stopped after epoch 1 of 2. Checkpoints hold tensors and plain data only, so no module path
is pickled in them; these tests prove it on real files.
"""
import json
import shutil
from pathlib import Path

import pytest

from fakedetect.cli import train as train_main
from fakedetect.data.folders import FacesDataset
from fakedetect.io.runs import read_history
from fakedetect.models.registry import load_trained_model
from fakedetect.serve.predict import predict

FIXTURE = Path(__file__).parent / "fixtures" / "old_run"


@pytest.fixture
def old_run(tmp_path):
    """A copy of the old run's out/ and checkpoints/ (resuming writes into them)."""
    return Path(shutil.copytree(FIXTURE, tmp_path / "old_run"))


def test_an_old_checkpoint_loads_and_scores_images(old_run, tiny_fakes):
    model, checkpoint = load_trained_model(old_run / "checkpoints" / "old_format.pt")
    assert checkpoint["model_name"] == "SeamNet-2x1" and checkpoint["run_name"] == "old_format"
    files = FacesDataset(tiny_fakes / "test").files[:4]
    results = predict([(model, checkpoint["normalization"])], files, checkpoint["threshold"], progress=False)
    assert [row["file"] for row in results] == [str(path) for path in files]
    assert all(0 <= row["fake_probability"] <= 1 for row in results)


def test_an_old_run_json_reads(old_run):
    history = read_history(old_run / "out" / "old_format.json", "train the run again")
    assert history["model"] == "SeamNet-2x1" and len(history["train_loss"]) == 1


def test_an_old_run_resumes_from_its_own_config_file(old_run, tiny_fakes, tmp_path, capsys):
    """``--config out/{run}.yaml`` of the old run, with this machine's folders, continues it to epoch 2."""
    out, checkpoints = old_run / "out", old_run / "checkpoints"
    code = train_main.main(["--config", str(out / "old_format.yaml"), "-d", str(tiny_fakes), "--resume",
                            "--out-dir", str(out), "--checkpoint-dir", str(checkpoints),
                            "--cache-dir", str(tmp_path / "cache")])
    assert code == 0, capsys.readouterr().err
    assert "resuming old_format after epoch 1" in capsys.readouterr().out
    history = json.loads((out / "old_format.json").read_text())
    assert len(history["train_loss"]) == 2 and [resume["after_epoch"] for resume in history["resumes"]] == [1]
    _, checkpoint = load_trained_model(checkpoints / "old_format.pt")  # the old epoch's, or epoch 2's if better
    assert checkpoint["model_name"] == "SeamNet-2x1" and checkpoint["epoch"] in (1, 2)
