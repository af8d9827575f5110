import json


def test_tiny_run_writes_outputs(tiny_run):
    history = json.loads(tiny_run["json"].read_text())
    assert len(history["train_loss"]) == 2
    assert tiny_run["best"].is_file() and tiny_run["last"].is_file()
