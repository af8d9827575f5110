"""tools/results_table.py: the Markdown table of runs."""
import json

import results_table


def minimal_history(epochs_run, planned, stopped_early=None):
    return {"config": {"epochs": planned, "dataset": "data/tiny_fakes", "recipe": "improved"},
            "dataset": "tiny_fakes", "model": "patch:resnet10t", "best_epoch": 1, "stopped_early": stopped_early,
            "train_loss": [0.5] * epochs_run, "val_acc": [0.75] * epochs_run, "test_acc": [0.7] * epochs_run,
            "test_balanced_acc": [0.7] * epochs_run, "test_auc": [0.8] * epochs_run,
            "epoch_seconds": [2.0] * epochs_run}


def test_results_table_reports_test_metrics_at_the_chosen_epoch(tiny_run):
    history = json.loads(tiny_run["json"].read_text())
    table = results_table.results_table([tiny_run["json"]], device="cpu")
    row = table.splitlines()[2].split(" | ")
    at = history["best_epoch"] - 1
    assert row[0] == "| tiny_fakes" and row[1] == "SimpleNet" and row[4] == str(history["best_epoch"])
    assert row[8] == f"{history['test_auc'][at]:.3f}" and row[6] == f"{history['test_acc'][at]:.3f}"


def test_results_table_prints_and_writes_the_table(tiny_run, tmp_path, capsys):
    output = tmp_path / "table.md"
    assert results_table.main([str(tiny_run["json"]), "--device", "cpu", "-o", str(output)]) == 0
    expected = results_table.results_table([tiny_run["json"]], device="cpu")
    assert output.read_text() == expected + "\n" and capsys.readouterr().out == expected + "\n"


def test_results_table_refuses_a_file_that_is_not_a_run(tiny_run, tmp_path, capsys):
    (tmp_path / "bench.json").write_text('{"rows": []}')
    for path, message in ((tmp_path / "missing.json", "missing.json: not a run JSON written by train_main.py"),
                          (tmp_path / "bench.json", "bench.json: not a run JSON written by train_main.py (no 'best_epoch' key)")):
        assert results_table.main([str(tiny_run["json"]), str(path)]) == 1
        assert message in capsys.readouterr().err


def test_results_table_marks_unfinished_runs():
    row = results_table.run_row(minimal_history(3, 10), "cpu").split(" | ")
    assert row[1] == "patch:resnet10t" and row[3] == "3 of 10 (unfinished)"
    assert results_table.run_row(minimal_history(10, 10), "cpu").split(" | ")[3] == "10"
    unplanned = minimal_history(3, 10)
    del unplanned["config"]["epochs"]  # a run JSON from before the config recorded it
    assert results_table.run_row(unplanned, "cpu").split(" | ")[3] == "3"


def test_results_table_shows_runs_stopped_early_as_stopped_not_unfinished():
    row = results_table.run_row(minimal_history(3, 10, stopped_early=3), "cpu").split(" | ")
    assert row[3] == "3 (stopped early at 3)"


def test_results_table_names_a_seed_other_than_0():
    history = minimal_history(3, 3)
    assert "seed" not in results_table.run_row(history, "cpu")
    history["config"]["seed"] = 1
    assert results_table.run_row(history, "cpu").split(" | ")[2] == "improved + seed 1"


def test_results_table_names_the_training_fraction_and_seed():
    history = minimal_history(3, 3)
    history["config"].update(train_fraction=0.25, seed=1)
    assert results_table.run_row(history, "cpu").split(" | ")[2] == "improved + train_fraction 0.25 + seed 1"
    history["config"].update(train_fraction=1.0, seed=0)
    assert results_table.run_row(history, "cpu").split(" | ")[2] == "improved"
