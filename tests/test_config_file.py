"""train_main.py --config: a YAML file or a run's JSON sets the defaults, flags override, every run writes its own."""
import json

import pytest
import yaml

from fakedetect.cli import train as train_main

# Where a run's files and caches go, and what it derives: free to differ between a run and its repeat.
PLACEMENT = {"out_dir", "checkpoint_dir", "cache_dir", "config", "recipe_overrides"}


def parse(tmp_path, *flags):
    args, _, _ = train_main.parse_args([*flags, "--out-dir", str(tmp_path / "out"),
                                        "--checkpoint-dir", str(tmp_path / "ck")])
    return args


def test_every_run_writes_its_config_as_yaml_beside_its_json(tiny_run):
    history = json.loads(tiny_run["json"].read_text())
    written = yaml.safe_load(tiny_run["json"].with_suffix(".yaml").read_text())
    assert written == history["config"] and written["batch_size"] == 8 and written["lr"] == 0.0005


def test_config_of_a_run_repeats_it_exactly(tiny_run, tmp_path):
    config = tiny_run["json"].with_suffix(".yaml")
    out, ck = tmp_path / "out", tmp_path / "ck"
    assert train_main.main(["--config", str(config), "--out-dir", str(out), "--checkpoint-dir", str(ck)]) == 0
    first = json.loads(tiny_run["json"].read_text())
    repeat = json.loads((out / tiny_run["json"].name).read_text())
    assert repeat["config"]["config"] == str(config)
    drop = lambda settings: {key: value for key, value in settings.items() if key not in PLACEMENT}  # noqa: E731
    assert drop(repeat["config"]) == drop(first["config"])
    assert repeat["val_acc"] == first["val_acc"] and repeat["train_loss"] == first["train_loss"]  # CPU, same seed


def test_flags_override_the_config_and_a_run_json_reads_as_its_config(tiny_run, tmp_path):
    args = parse(tmp_path, "--config", str(tiny_run["json"]), "-e", "1", "--lr", "0.01")
    assert (args.epochs, args.lr, args.batch_size, args.optimizer) == (1, 0.01, 8, "Adam")
    assert args.dataset == str(tiny_run["dataset"]) and args.seed == 0


def test_a_hand_written_yaml_sets_some_knobs_and_the_recipe_the_rest(tiny_fakes, tmp_path):
    config = tmp_path / "short.yaml"
    config.write_text(f"dataset: {tiny_fakes}\nrecipe: course\nlr: 5e-4\nepochs: 3\nflip: false\nresume: true\n")
    args = parse(tmp_path, "--config", str(config))
    assert (args.lr, args.epochs, args.flip, args.optimizer, args.schedule) == (0.0005, 3, False, "Adam", "constant")
    assert args.resume is False  # an invocation's own request, never restored from a file


@pytest.mark.parametrize("text, message", [
    ("learning_rate: 0.1\n", "unknown key 'learning_rate'"),
    ("optimizer: RMSprop\n", "optimizer: 'RMSprop' is not a value of --optimizer; choose one of"),
    ("epochs: 2.5\n", "epochs: 2.5 is not a value of --epochs"),
    ("flip: 1\n", "flip: 1 is not a value of the switch --flip"),
    ("model: ResNet\n", "model: --model: invalid choice: 'ResNet'"),
    ("lr: 0\n", "--lr must be > 0"),
    ("dataset: null\n", "dataset: null is not a value of --dataset"),
    ("- lr\n", "holds a list, not a mapping of settings"),
    ("lr: [0.1\n", "not YAML or JSON (parse error at line 2)"),
])
def test_a_bad_config_is_one_line_naming_the_file_and_the_key(tmp_path, capsys, text, message):
    config = tmp_path / "bad.yaml"
    config.write_text(text)
    with pytest.raises(SystemExit) as exit_info:
        parse(tmp_path, "--config", str(config))
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert message in error and len(error.splitlines()) == 1
    assert str(config) in error or "--lr" in message


def test_a_json_that_is_no_run_json_and_a_missing_file_are_refused(tmp_path, capsys):
    (tmp_path / "other.json").write_text('{"lr": 0.1}')
    for path, message in ((tmp_path / "other.json", "without a 'config' mapping is not a run JSON"),
                          (tmp_path / "missing.yaml", "cannot read it")):
        with pytest.raises(SystemExit):
            parse(tmp_path, "--config", str(path))
        error = capsys.readouterr().err
        assert f"--config {path}: " in error and message in error
