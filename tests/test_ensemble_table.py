"""ensemble_table.py: runs and their mean-logit ensemble, judged from predict.py CSVs."""
import csv

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

import ensemble_table

FIELDS = ("file", "fake_probability", "decision", "face_x", "face_y", "face_w", "face_h", "cam", "error")


def write_predictions(path, probabilities, labels, error=""):
    split = path.stem.rsplit("_", 1)[1]
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, FIELDS)
        writer.writeheader()
        for index, (probability, label) in enumerate(zip(probabilities, labels)):
            writer.writerow({"file": f"data/set/{split}/{'fake' if label else 'real'}/{index:03d}.jpg",
                             "fake_probability": probability, "error": error})


@pytest.fixture()
def predictions(tmp_path):
    """Two noisy runs whose errors are independent, on 40 val and 40 test images."""
    rng = np.random.default_rng(0)
    labels = np.arange(40) % 2
    scores = {}
    for run in ("a", "b"):
        for split in ("val", "test"):
            scores[run, split] = 1 / (1 + np.exp(-(2 * labels - 1 + 1.5 * rng.standard_normal(40))))
            write_predictions(tmp_path / f"{run}_{split}.csv", scores[run, split], labels)
    return tmp_path, labels, scores


def test_each_run_and_the_mean_logit_ensemble_are_scored(predictions):
    folder, labels, scores = predictions
    rows = dict(ensemble_table.ensemble_rows(folder, ["a", "b"]))
    assert list(rows) == ["a", "b", "ensemble of 2 (mean logit)"]
    for run in ("a", "b"):
        assert rows[run]["val_auc"] == pytest.approx(roc_auc_score(labels, scores[run, "val"]))
        assert rows[run]["test_auc"] == pytest.approx(roc_auc_score(labels, scores[run, "test"]))
    logits = {split: sum(np.log(scores[run, split] / (1 - scores[run, split])) for run in ("a", "b"))
              for split in ("val", "test")}
    assert rows["ensemble of 2 (mean logit)"]["test_auc"] == pytest.approx(roc_auc_score(labels, logits["test"]))
    assert rows["ensemble of 2 (mean logit)"]["test_auc"] > max(rows["a"]["test_auc"], rows["b"]["test_auc"])


def test_the_threshold_is_chosen_on_validation(predictions):
    folder, labels, _ = predictions
    write_predictions(folder / "c_val.csv", np.where(labels == 1, 0.95, 0.9), labels)  # val EER threshold 0.95
    write_predictions(folder / "c_test.csv", np.where(labels == 1, 0.97, 0.92), labels)  # all fake at 0.5
    row = dict(ensemble_table.ensemble_rows(folder, ["c"]))["c"]
    assert row["threshold"] == pytest.approx(0.95)
    assert row["val_auc"] == 1.0 and row["test_accuracy"] == 1.0 and row["test_balanced_accuracy"] == 1.0


def test_bad_predictions_exit_1_naming_the_file_and_the_fix(predictions, capsys):
    folder, labels, _ = predictions
    assert ensemble_table.main([str(folder), "a", "missing"]) == 1
    assert "missing_val.csv: not found; write it with predict.py" in capsys.readouterr().err
    write_predictions(folder / "short_val.csv", np.full(20, 0.5), labels[:20])
    write_predictions(folder / "short_test.csv", np.full(20, 0.5), labels[:20])
    assert ensemble_table.main([str(folder), "a", "short"]) == 1
    assert "short_val.csv: scores other images than a_val.csv" in capsys.readouterr().err
    write_predictions(folder / "broken_val.csv", np.full(40, 0.5), labels, error="cannot read")
    assert ensemble_table.main([str(folder), "broken"]) == 1
    assert "broken_val.csv: 40 images were not scored" in capsys.readouterr().err
    (folder / "flat_val.csv").write_text("file,fake_probability,error\nphotos/1.jpg,0.3,\n")
    assert ensemble_table.main([str(folder), "flat"]) == 1
    assert "flat_val.csv: photos/1.jpg is not in a real/ or fake/ folder" in capsys.readouterr().err
    for name, text, message in (("columns", "path,score\nfake/1.jpg,0.3\n", "no fake_probability or file column"),
                                ("empty", "file,fake_probability,error\n", "holds no predictions"),
                                ("text", "file,fake_probability,error\nfake/1.jpg,high,\n", "fake_probability 'high' of fake/1.jpg is not a number")):
        (folder / f"{name}_val.csv").write_text(text)
        assert ensemble_table.main([str(folder), name]) == 1
        assert f"{name}_val.csv: {message}" in capsys.readouterr().err


def test_labels_come_from_the_nearest_real_or_fake_folder(tmp_path):
    (tmp_path / "p.csv").write_text("file,fake_probability,error\nd/test/fake/gan/b.png,0.9,\nd/test/real/a.png,0.2,\n")
    files, labels, probabilities = ensemble_table.read_predictions(tmp_path / "p.csv")
    assert files == ["d/test/fake/gan/b.png", "d/test/real/a.png"]
    assert labels.tolist() == [1, 0] and probabilities.tolist() == [0.9, 0.2]


def test_the_table_is_printed_and_written(predictions, capsys):
    folder, _, _ = predictions
    assert ensemble_table.main([str(folder), "a", "b", "-o", str(folder / "table.md")]) == 0
    table = (folder / "table.md").read_text()
    assert table.splitlines()[0] == "| run | val AUC | val EER threshold | test acc | test bal. acc | test AUC |"
    assert "| ensemble of 2 (mean logit) |" in table and table.strip() == capsys.readouterr().out.strip()
