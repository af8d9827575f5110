import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from PIL import Image

from fakedetect.cli import train as train_main
from fakedetect.config.recipe import RECIPES
from fakedetect.data.augment import CROP_PADDING, AugmentConfig
from fakedetect.data.batches import item_transform
from fakedetect.data.folders import find_dataset
from fakedetect.data.normalization import CIFAR10_NORMALIZATION
from fakedetect.models.simplenet import SimpleNet
from fakedetect.train.normalization import resolve_normalization
from fakedetect.train.optim import build_optimizer, build_scheduler
from fakedetect.train.trainer import Trainer

ROOT = Path(__file__).resolve().parents[1]


def test_train_fraction_trains_on_part_of_the_training_split(tiny_fakes, tmp_path, capsys):
    code = train_main.main(["-d", str(tiny_fakes), "--train-fraction", "0.5", "-e", "1", "--device", "cpu",
                            "--out-dir", str(tmp_path / "out"), "--checkpoint-dir", str(tmp_path / "ck"),
                            "--cache-dir", str(tmp_path / "cache")])
    assert code == 0
    output = capsys.readouterr().out
    assert "train: 12 of 24 images kept (--train-fraction 0.5)" in output
    assert "train: 12 images decoded" in output and "val: 12 images decoded" in output
    history = json.loads(next((tmp_path / "out").glob("*.json")).read_text())
    assert history["config"]["train_fraction"] == 0.5


def test_end_to_end_outputs(tiny_run):
    history = json.loads(tiny_run["json"].read_text())
    for key in ("model", "dataset", "optimizer", "train_loss", "train_acc", "val_loss", "val_acc", "test_loss",
                "test_acc", "val_auc", "test_auc", "test_balanced_acc", "epoch_seconds", "train_images_per_s",
                "config", "versions", "best_epoch"):
        assert key in history, key
    assert history["dataset"] == "tiny_fakes" and history["optimizer"]["name"] == "Adam"
    assert all(0.0 <= value <= 1.0 for value in history["val_acc"] + history["test_acc"])
    assert history["config"]["batch_size"] == 8 and history["config"]["seed"] == 0
    best = torch.load(tiny_run["best"], map_location="cpu", weights_only=True)
    assert best["model_name"] == "SimpleNet" and best["epoch"] == history["best_epoch"]
    assert 0.0 <= best["threshold"] <= 1.0
    last = torch.load(tiny_run["last"], map_location="cpu", weights_only=True)
    assert last["epoch"] == 2 and last["history"]["train_loss"] == history["train_loss"]


@pytest.mark.parametrize("flags, message", [
    (["--lr", "0"], "--lr must be > 0"),
    (["-e", "0"], "--epochs must be >= 1"),
    (["-b", "0"], "--batch-size must be >= 1"),
    (["--batch-size", "0"], "--batch-size must be >= 1"),
    (["--batch_size", "0"], "--batch-size must be >= 1"),
    (["--checkpoint-interval", "-1"], "--checkpoint-interval must be >= 0 seconds"),
    (["--train-fraction", "0"], "--train-fraction must be in (0, 1]"),
    (["--train-fraction", "1.5"], "--train-fraction must be in (0, 1]"),
    (["-m", "ResNet"], "invalid choice: 'ResNet'"),
    (["-o", "RMSprop"], "invalid choice: 'RMSprop'"),
    (["-m", "timm:resnet10t", "--weights", "missing.pth"], "missing.pth: file not found"),
    (["--weights", "missing.pth"], "--weights: SimpleNet has no pretrained weights"),
    (["--device", "gpu"], "--device gpu: not a device"),
    (["--seed", "-1"], "--seed must be in 0..4294967295"),
    (["-o", "SGD", "--momentum", "-1"], "--momentum must be in [0, 1)"),
    (["--warmup-epochs", "inf"], "--warmup-epochs must be a finite number"),
    (["--mixup", "nan"], "--mixup must be a finite number >= 0"),
    (["--blur-prob", "nan"], "--blur-prob must be in [0, 1]"),
    (["--self-blend", "1"], "--self-blend 1: every real training image would become a pseudo-fake"),
    (["--real-only", "--self-blend", "1", "--no-self-blend-pairs"], "leaving no real image to learn from"),
    (["--self-blend-pairs"], "--self-blend-pairs pairs real images with their pseudo-fakes: add --self-blend P"),
    (["--mask-loss", "1"], "--mask-loss: SimpleNet has no mask head"),
    (["-m", "SeamNet", "--mask-loss", "1", "--mixup", "0.2"], "--mask-loss and --mixup"),
    (["-m", "SeamNet", "--mask-loss", "1", "--no-cache"], "--mask-loss needs the decoded cache"),
    (["--self-blend", "0.5", "--self-blend-pairs", "--no-cache"], "--self-blend-pairs needs the decoded cache"),
    (["-m", "SeamNet-0x1"], "write SeamNet-WIDTHxDEPTH with a width of 1 to 512"),
])
def test_bad_arguments_exit_2_and_write_nothing(tiny_fakes, tmp_path, capsys, flags, message):
    with pytest.raises(SystemExit) as exit_info:
        train_main.main(["-d", str(tiny_fakes), "--out-dir", str(tmp_path / "out"),
                         "--checkpoint-dir", str(tmp_path / "ck")] + flags)
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert message in error and "usage:" not in error and len(error.splitlines()) == 1
    assert not (tmp_path / "out").exists() and not (tmp_path / "ck").exists()


def test_missing_dataset_names_the_fix(tmp_path, capsys):
    (tmp_path / "demo_fakes" / "train").mkdir(parents=True)
    with pytest.raises(SystemExit) as exit_info:
        train_main.main(["-d", "demo_fake", "--data-root", str(tmp_path)])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert "demo_data.py" in error and f"(datasets under {tmp_path}: demo_fakes)" in error


def test_dataset_name_resolves_under_data_root(tiny_fakes):
    assert find_dataset("tiny_fakes", tiny_fakes.parent) == tiny_fakes
    assert find_dataset(str(tiny_fakes), "elsewhere") == tiny_fakes


def test_refuses_to_overwrite_an_earlier_run(tiny_run, capsys):
    before = tiny_run["best"].read_bytes()
    with pytest.raises(SystemExit) as exit_info:
        train_main.main(["-m", "SimpleNet", "-d", str(tiny_run["dataset"]), "-o", "Adam",
                         "--out-dir", str(tiny_run["out_dir"]), "--checkpoint-dir", str(tiny_run["checkpoint_dir"])])
    assert exit_info.value.code == 2
    assert "--overwrite" in capsys.readouterr().err
    assert tiny_run["best"].read_bytes() == before


def test_resume_without_a_last_checkpoint_is_refused(tiny_run, tmp_path, capsys):
    out, ck = tmp_path / "out", tmp_path / "ck"
    out.mkdir()
    ck.mkdir()
    shutil.copy(tiny_run["json"], out)
    shutil.copy(tiny_run["best"], ck)
    before = (ck / tiny_run["best"].name).read_bytes()
    with pytest.raises(SystemExit) as exit_info:
        train_main.main(["-m", "SimpleNet", "-d", str(tiny_run["dataset"]), "-o", "Adam", "--resume",
                         "--out-dir", str(out), "--checkpoint-dir", str(ck)])
    assert exit_info.value.code == 2
    assert "last checkpoint) not found" in capsys.readouterr().err
    assert (ck / tiny_run["best"].name).read_bytes() == before


def test_resume_may_change_where_and_how_fast_it_runs(tiny_run, tmp_path, capsys):
    out, ck = tmp_path / "out", tmp_path / "ck"
    shutil.copytree(tiny_run["out_dir"], out)
    shutil.copytree(tiny_run["checkpoint_dir"], ck)
    common = ["-m", "SimpleNet", "-o", "Adam", "--lr", "0.0005", "-b", "8", "-e", "2", "--resume",
              "--out-dir", str(out), "--checkpoint-dir", str(ck)]
    code = train_main.main(common + ["-d", "tiny_fakes", "--data-root", str(tiny_run["dataset"].parent), "--no-cache",
                                     "--workers", "1", "--device", "cpu", "--strict", "--checkpoint-interval", "5",
                                     "--amp", "off", "--deterministic", "--cache-dir", str(tmp_path / "cache")])
    assert code == 0, capsys.readouterr().err
    assert "resuming tiny_fakes_SimpleNet_Adam after epoch 2" in capsys.readouterr().out
    code = train_main.main(common + ["-d", str(tiny_run["dataset"]), "--lr", "0.001"])
    assert code == 1 and "--lr 0.0005 (now 0.001)" in capsys.readouterr().err


def test_resume_refuses_other_data_and_records_what_it_changed(tiny_fakes, tmp_path, capsys):
    moved, other = tmp_path / "moved" / "tiny_fakes", tmp_path / "other" / "tiny_fakes"
    shutil.copytree(tiny_fakes, moved)
    shutil.copytree(tiny_fakes, other)
    sorted((other / "train" / "fake").iterdir())[0].unlink()
    common = ["-e", "2", "-b", "8", "--device", "cpu", "--out-dir", str(tmp_path / "out"),
              "--checkpoint-dir", str(tmp_path / "ck"), "--cache-dir", str(tmp_path / "cache")]
    assert train_main.main(["-d", str(tiny_fakes), *common]) == 0
    capsys.readouterr()
    assert train_main.main(["-d", str(other), *common, "--resume"]) == 1
    assert "holds a run with data whose file names, labels, sizes and pixels digest to" in capsys.readouterr().err
    assert train_main.main(["-d", str(moved), *common, "--resume", "--workers", "1"]) == 0
    history = json.loads((tmp_path / "out" / "tiny_fakes_SimpleNet_AdamW.json").read_text())
    [resume] = history["resumes"]
    assert resume["after_epoch"] == 2 and len(history["train_loss"]) == 2
    assert resume["changed"]["dataset_path"] == str(moved) and resume["changed"]["workers"] == 1
    assert resume["versions"]["torch"] == str(torch.__version__)


def test_resume_with_nothing_to_resume_says_it_starts_afresh(tiny_fakes, tmp_path, capsys):
    code = train_main.main(["-d", str(tiny_fakes), "-e", "1", "--resume", "--device", "cpu", "--out-dir",
                            str(tmp_path / "out"), "--checkpoint-dir", str(tmp_path / "ck"),
                            "--cache-dir", str(tmp_path / "cache")])
    assert code == 0
    assert "no last checkpoint of tiny_fakes_SimpleNet_AdamW to resume" in capsys.readouterr().out


def test_unloadable_xception_weights_name_the_file(tiny_fakes, tmp_path, capsys):
    (tmp_path / "truncated.pth").write_bytes(b"PK\x03\x04 not a whole file")
    code = train_main.main(["-m", "XceptionBased", "--weights", str(tmp_path / "truncated.pth"), "-d", str(tiny_fakes),
                            "--out-dir", str(tmp_path / "out"), "--checkpoint-dir", str(tmp_path / "ck")])
    assert code == 1
    assert "truncated.pth: not a loadable weights file" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_local_weights_count_as_pretrained_for_the_normalization():
    flags = {"model": "XceptionBased", "no_pretrained": True, "weights": None, "pretrained": False}
    assert not train_main.is_pretrained(SimpleNamespace(**flags))
    assert train_main.is_pretrained(SimpleNamespace(**{**flags, "weights": "xception.pth"}))
    assert train_main.is_pretrained(SimpleNamespace(**{**flags, "no_pretrained": False}))
    timm_flags = {**flags, "model": "timm:resnet18", "no_pretrained": False}
    assert train_main.is_pretrained(SimpleNamespace(**{**timm_flags, "weights": "r.pth"}))
    assert train_main.is_pretrained(SimpleNamespace(**{**timm_flags, "pretrained": True}))  # hub weights
    assert not train_main.is_pretrained(SimpleNamespace(**timm_flags))


def test_per_item_path_trains(tiny_fakes, tmp_path):
    code = train_main.main(["-d", str(tiny_fakes), "-o", "Adam", "-b", "8", "-e", "1", "--no-cache", "--device", "cpu",
                            "--out-dir", str(tmp_path / "out"), "--checkpoint-dir", str(tmp_path / "ck")])
    assert code == 0
    history = json.loads((tmp_path / "out" / "tiny_fakes_SimpleNet_Adam.json").read_text())
    assert history["config"]["no_cache"] is True and len(history["train_loss"]) == 1


def kill_when(process, ready, delay=0.0, timeout=120):
    """SIGKILL ``process`` ``delay`` seconds after ``ready()`` becomes true."""
    deadline = time.time() + timeout
    while not ready() and time.time() < deadline and process.poll() is None:
        time.sleep(0.002)
    time.sleep(delay)
    assert process.poll() is None, "the run ended before the kill point"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()


@pytest.fixture(scope="module")
def uninterrupted_run(tiny_fakes, tmp_path_factory):
    work = tmp_path_factory.mktemp("uninterrupted")
    subprocess.run(kill_test_command(tiny_fakes, work), check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return torch.load(work / "ck" / "tiny_fakes_SimpleNet_Adam_last.pt", weights_only=True)


def kill_test_command(dataset, work):
    return [sys.executable, str(ROOT / "train_main.py"), "-d", str(dataset), "-o", "Adam", "-b", "2", "-e", "3",
            "--device", "cpu", "--deterministic", "--checkpoint-interval", "0", "--out-dir", str(work / "out"),
            "--checkpoint-dir", str(work / "ck"), "--cache-dir", str(work / "cache")]


@pytest.mark.slow
@pytest.mark.parametrize("kill_point", ["mid_epoch", "checkpoint_write"])
def test_sigkill_then_resume_loses_nothing(tiny_fakes, tmp_path, uninterrupted_run, kill_point):
    command = kill_test_command(tiny_fakes, tmp_path)
    json_path = tmp_path / "out" / "tiny_fakes_SimpleNet_Adam.json"
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if kill_point == "mid_epoch":
        kill_when(process, json_path.exists, delay=0.3)
    else:  # the moment a checkpoint's temporary file appears (the second epoch's, so one whole file exists)
        kill_when(process, lambda: json_path.exists() and any((tmp_path / "ck").glob(".*.tmp")))
    killed = json.loads(json_path.read_text())
    done = len(killed["train_loss"])
    assert 1 <= done < 3
    assert all(len(killed[key]) == done for key in ("val_acc", "test_acc", "epoch_seconds"))
    last = torch.load(tmp_path / "ck" / "tiny_fakes_SimpleNet_Adam_last.pt", weights_only=True)
    assert last["epoch"] in (done, done + 1)  # the kill may fall between the checkpoint and the JSON
    assert last["history"]["train_loss"][:done] == killed["train_loss"]
    torch.load(tmp_path / "ck" / "tiny_fakes_SimpleNet_Adam.pt", weights_only=True)
    subprocess.run(command + ["--resume"], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    finished = json.loads(json_path.read_text())
    assert len(finished["train_loss"]) == 3
    assert finished["train_loss"][:done] == killed["train_loss"]
    assert not list((tmp_path / "ck").glob(".*.tmp")), "stale temporary files left behind"
    resumed = torch.load(tmp_path / "ck" / "tiny_fakes_SimpleNet_Adam_last.pt", weights_only=True)
    for key, value in uninterrupted_run["model"].items():
        assert torch.equal(value, resumed["model"][key]), key
    assert finished["train_loss"] == uninterrupted_run["history"]["train_loss"]


def parse(tiny_fakes, tmp_path, *flags):
    args, _, _ = train_main.parse_args(["-d", str(tiny_fakes), "--out-dir", str(tmp_path / "out"),
                                     "--checkpoint-dir", str(tmp_path / "ck"), *flags])
    return args


def test_course_recipe_is_the_course_recipe(tiny_fakes, tmp_path):
    args = parse(tiny_fakes, tmp_path, "--recipe", "course")
    assert (args.optimizer, args.lr, args.batch_size, args.weight_decay) == ("Adam", 1e-3, 32, 0.0)
    assert (args.schedule, args.warmup_epochs, args.label_smoothing, args.class_balance) == ("constant", 0, 0, "none")
    assert (args.patience, args.clip_grad_norm, args.selection_metric) == (0, 0, "val_acc")
    assert (args.crop, args.flip, args.jitter, args.blur_prob, args.jpeg_prob) == ("pad", True, 0, 0, 0)
    assert (args.erase_prob, args.mixup, args.drop_path, args.ema) == (0, 0, 0, 0)
    assert resolve_normalization(args.normalization, "SimpleNet", None, False, None) == CIFAR10_NORMALIZATION
    assert CIFAR10_NORMALIZATION == ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))
    optimizer = build_optimizer(args.optimizer, SimpleNet().parameters(), args.lr)
    assert type(optimizer) is torch.optim.Adam and optimizer.defaults["weight_decay"] == 0
    assert build_scheduler(optimizer, args.schedule, 100, 0) is None
    transform = item_transform((0.5,) * 3, (0.5,) * 3, True, AugmentConfig(crop=args.crop, flip=args.flip))
    assert [type(step).__name__ for step in transform.transforms] == [
        "RandomCrop", "RandomHorizontalFlip", "ToTensor", "Normalize"]
    assert transform.transforms[0].padding == CROP_PADDING == 4


def test_flags_override_the_recipe_and_the_json_records_every_setting(tiny_fakes, tmp_path):
    args = parse(tiny_fakes, tmp_path, "--recipe", "course", "--lr", "0.01", "--no-flip")
    assert args.lr == 0.01 and args.flip is False and args.optimizer == "Adam"
    assert sorted(args.recipe_overrides) == ["flip", "lr"]
    assert parse(tiny_fakes, tmp_path).recipe == "improved"
    code = train_main.main(["-d", str(tiny_fakes), "-b", "8", "-e", "1", "--device", "cpu", "--jitter", "0.1",
                            "--out-dir", str(tmp_path / "out"), "--checkpoint-dir", str(tmp_path / "ck"),
                            "--cache-dir", str(tmp_path / "cache")])
    assert code == 0
    history = json.loads((tmp_path / "out" / "tiny_fakes_SimpleNet_AdamW.json").read_text())
    for key, value in RECIPES["improved"].items():
        expected = {"batch_size": 8, "epochs": 1, "jitter": 0.1}.get(key, value)
        assert history["config"][key] == expected, key
    mean, std = history["config"]["normalization_mean_std"]
    best = torch.load(tmp_path / "ck" / "tiny_fakes_SimpleNet_AdamW.pt", weights_only=True)
    assert [list(x) for x in best["normalization"]] == [mean, std]


@pytest.fixture
def built_trainers(monkeypatch):
    """The Trainers that train_main.main builds from now on, in order."""
    built = []

    class RecordedTrainer(Trainer):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            built.append(self)
    monkeypatch.setattr(train_main, "Trainer", RecordedTrainer)
    return built


def run_main(dataset, tmp_path, *flags):
    """train_main.main on ``dataset`` (batch 8, CPU, outputs under ``tmp_path``); returns the run's JSON."""
    code = train_main.main(["-d", str(dataset), "-b", "8", "--device", "cpu", "--out-dir", str(tmp_path / "out"),
                            "--checkpoint-dir", str(tmp_path / "ck"), "--cache-dir", str(tmp_path / "cache"), *flags])
    assert code == 0
    [json_path] = (tmp_path / "out").glob("*.json")
    return json.loads(json_path.read_text())


def test_course_recipe_trains_with_the_course_settings(tiny_fakes, tmp_path, built_trainers):
    history = run_main(tiny_fakes, tmp_path, "--recipe", "course")
    for key, value in RECIPES["course"].items():
        assert history["config"][key] == {"batch_size": 8}.get(key, value), key
    assert len(history["train_loss"]) == 2 and history["lr"] == [1e-3, 1e-3]
    [trainer] = built_trainers
    assert type(trainer.optimizer) is torch.optim.Adam and trainer.optimizer.defaults["weight_decay"] == 0
    assert trainer.scheduler is None and (trainer.recipe.clip_grad_norm, trainer.recipe.patience) == (0, 0)
    assert trainer.recipe.mixup == 0
    assert trainer.criterion.weight is None and trainer.criterion.label_smoothing == 0
    assert trainer.recipe.selection_metric == "val_acc" and trainer.average is None
    best = torch.load(tmp_path / "ck" / "tiny_fakes_SimpleNet_Adam.pt", weights_only=True)
    assert tuple(map(tuple, best["normalization"])) == CIFAR10_NORMALIZATION


def test_the_run_follows_the_warm_up_and_cosine_schedule_it_records(tiny_fakes, tmp_path):
    # 24 training images in batches of 8: 3 steps per epoch, 3 warm-up steps, 9 in all; lr is read after each epoch
    history = run_main(tiny_fakes, tmp_path, "-e", "3", "--lr", "0.002", "--warmup-epochs", "1", "--patience", "0")
    assert history["lr"] == pytest.approx([0.002, 0.001, 0.0], abs=1e-12)
    flat = run_main(tiny_fakes, tmp_path / "flat", "-e", "2", "--lr", "0.002", "--schedule", "constant",
                    "--warmup-epochs", "0", "--patience", "0")
    assert flat["lr"] == [0.002, 0.002]


@pytest.mark.parametrize("balance", ["weights", "sampler", "none"])
def test_class_balance_reaches_the_loss_or_the_sampler(tiny_fakes, tmp_path, built_trainers, balance):
    unbalanced = tmp_path / "unbalanced"
    shutil.copytree(tiny_fakes, unbalanced)
    for path in sorted((unbalanced / "train" / "fake").iterdir())[4:]:
        path.unlink()  # 12 real, 4 fake training images
    run_main(unbalanced, tmp_path, "-e", "1", "--class-balance", balance)
    [trainer] = built_trainers
    loss_weights, sample_weights = trainer.criterion.weight, trainer.train_batches.sample_weights
    if balance == "weights":
        assert loss_weights.tolist() == pytest.approx([16 / 24, 16 / 8]) and sample_weights is None
    elif balance == "sampler":
        assert loss_weights is None
        labels = trainer.train_dataset.labels
        assert sample_weights[labels == 0].sum().item() == pytest.approx(sample_weights[labels == 1].sum().item())
    else:
        assert loss_weights is None and sample_weights is None


@pytest.mark.parametrize("flags, message", [
    (["-o", "Adam", "--weight-decay", "0.1"], "applies to AdamW only"),
    (["--crop", "native"], "SimpleNet takes 256x256 inputs only"),
    (["--blur-prob", "2"], "--blur-prob must be in [0, 1]"),
    (["--label-smoothing", "-0.1"], "--label-smoothing must be in"),
    (["--normalization", "model"], "SimpleNet has no pretrained backbone statistics"),
    (["-m", "timm:no_such_net"], "not a timm architecture"),
    (["--drop-path", "0.1"], "--drop-path: SimpleNet has no stochastic depth"),
    (["--mixup", "-1"], "--mixup must be a finite number >= 0"),
    (["--erase-prob", "1.5"], "--erase-prob must be in [0, 1]"),
    (["--crop-scale", "0"], "--crop-scale must be in [0.01, 1]"),
    (["-m", "timm:resnet10t", "--crop", "native", "--crop-size", "16"], "--crop-size must be in 32..256 (got 16)"),
    (["--resume", "--overwrite"], "--resume and --overwrite contradict each other"),
    (["--ema", "1"], "--ema must be in [0, 0.99999]"),
    (["-m", "patch:no_such_net"], "not a timm architecture"),
    (["-m", "patch:resnet10t@3"], "the output stride after @ must be 2, 4, 8, 16 or 32 (e.g. patch:resnet10t@16)"),
    (["-m", "patch:resnet10t@x"], "invalid choice: 'patch:resnet10t@x'; the output stride after @ must be"),
])
def test_bad_recipe_flags_exit_2(tiny_fakes, tmp_path, capsys, flags, message):
    with pytest.raises(SystemExit) as exit_info:
        parse(tiny_fakes, tmp_path, *flags)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_drop_path_on_an_architecture_without_it_exits_2_with_the_fix(tiny_fakes, tmp_path, capsys):
    code = train_main.main(["-m", "timm:legacy_xception", "--drop-path", "0.1", "-d", str(tiny_fakes),
                            "--device", "cpu", "--out-dir", str(tmp_path / "out"),
                            "--checkpoint-dir", str(tmp_path / "ck"), "--cache-dir", str(tmp_path / "cache")])
    assert code == 2
    assert "--drop-path 0.1: timm's legacy_xception has no stochastic depth; drop the flag" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("name, message", [
    ("patch:convnext_atto@2", "convnext_atto has no stage of output stride 2; choose @STRIDE with STRIDE one of [4, 8, 16, 32]"),
    ("patch:vit_tiny_patch16_224", "vit_tiny_patch16_224 has no stage of output stride 8"),
])
def test_patch_names_the_architecture_cannot_build_exit_2_with_the_fix(tiny_fakes, tmp_path, capsys, name, message):
    code = train_main.main(["-m", name, "-d", str(tiny_fakes), "--device", "cpu", "--out-dir", str(tmp_path / "out"),
                            "--checkpoint-dir", str(tmp_path / "ck"), "--cache-dir", str(tmp_path / "cache")])
    assert code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists() and not (tmp_path / "ck").exists()


@pytest.mark.parametrize("path_flags", [[], ["--no-cache"]])
def test_resume_refuses_changed_pixels_with_the_same_file_sizes(tiny_fakes, tmp_path, capsys, path_flags):
    bitmaps = tmp_path / "bitmaps"  # uncompressed: every image file has the same size
    for path in sorted(tiny_fakes.glob("*/*/*.png")):
        if path.parent.name in ("real", "fake"):
            target = bitmaps / path.relative_to(tiny_fakes).with_suffix(".bmp")
            target.parent.mkdir(parents=True, exist_ok=True)
            Image.open(path).convert("RGB").save(target)
    common = ["-d", str(bitmaps), "-e", "2", "-b", "8", "--device", "cpu", "--normalization", "symmetric",
              "--out-dir", str(tmp_path / "out"), "--checkpoint-dir", str(tmp_path / "ck"),
              "--cache-dir", str(tmp_path / "cache"), *path_flags]
    assert train_main.main(common) == 0
    first, second = sorted((bitmaps / "train" / "real").iterdir())[:2]
    contents = first.read_bytes(), second.read_bytes()
    first.write_bytes(contents[1])  # the same names, labels and sizes; other pixels
    second.write_bytes(contents[0])
    capsys.readouterr()
    assert train_main.main(common + ["--resume"]) == 1
    assert "holds a run with data whose file names, labels, sizes and pixels digest to" in capsys.readouterr().err
    first.write_bytes(contents[0])
    second.write_bytes(contents[1])
    assert train_main.main(common + ["--resume"]) == 0  # the run's own data: accepted (nothing left to train)


def test_run_names_share_one_out_dir_and_the_analysis_reads_them(tiny_fakes, tmp_path, capsys):
    from fakedetect.cli import plot_accuracy_and_loss, predict
    common = ["-d", str(tiny_fakes), "-e", "1", "-b", "8", "--device", "cpu", "--out-dir", str(tmp_path / "out"),
              "--checkpoint-dir", str(tmp_path / "ck"), "--cache-dir", str(tmp_path / "cache")]
    for seed in (0, 1):
        assert train_main.main(common + ["--seed", str(seed), "--run-name", f"tiny_s{seed}"]) == 0
    assert sorted(path.name for path in (tmp_path / "out").iterdir()) == [
        "tiny_s0.json", "tiny_s0.yaml", "tiny_s1.json", "tiny_s1.yaml"]
    assert sorted(path.name for path in (tmp_path / "ck").iterdir()) == [
        "tiny_s0.pt", "tiny_s0_last.pt", "tiny_s1.pt", "tiny_s1_last.pt"]
    runs = [json.loads((tmp_path / "out" / f"tiny_s{seed}.json").read_text()) for seed in (0, 1)]
    assert [run["run_name"] for run in runs] == ["tiny_s0", "tiny_s1"] and runs[0]["train_loss"] != runs[1]["train_loss"]
    assert plot_accuracy_and_loss.main(["-d", str(tiny_fakes), "--run-name", "tiny_s1", "--out-dir", str(tmp_path / "out"),
                                        "--figures-dir", str(tmp_path / "figures")]) == 0
    assert (tmp_path / "figures" / "tiny_s1_losses_plot.png").is_file()
    assert predict.main([str(tmp_path / "ck" / "tiny_s1.pt"), str(tiny_fakes / "test"), "--device", "cpu",
                         "--no-progress"]) == 0
    capsys.readouterr()
    assert plot_accuracy_and_loss.main(["-d", str(tiny_fakes), "--run-name", "tiny_s2", "--out-dir",
                                        str(tmp_path / "out"), "--figures-dir", str(tmp_path / "figures")]) == 1
    error = capsys.readouterr().err
    assert f"{tmp_path / 'out' / 'tiny_s2.json'}: not found; train the run first: python train_main.py" in error
    assert "--run-name tiny_s2" in error
    with pytest.raises(SystemExit) as exit_info:
        train_main.main(common + ["--run-name", "../escape"])
    assert exit_info.value.code == 2
    assert "--run-name '../escape': use letters, digits and . _ - @ + = only" in capsys.readouterr().err


def test_resume_with_the_best_checkpoint_deleted_says_so_and_names_no_missing_file(tiny_fakes, tmp_path, capsys):
    common = ["-d", str(tiny_fakes), "-b", "8", "-e", "1", "--device", "cpu", "--out-dir", str(tmp_path / "out"),
              "--checkpoint-dir", str(tmp_path / "ck"), "--cache-dir", str(tmp_path / "cache")]
    assert train_main.main(common) == 0
    best = tmp_path / "ck" / "tiny_fakes_SimpleNet_AdamW.pt"
    best.unlink()
    capsys.readouterr()
    assert train_main.main(common + ["--resume"]) == 0  # nothing left to train: the best epoch stays epoch 1
    output = capsys.readouterr().out
    assert f"warning: {best} (the best checkpoint, epoch 1) is missing; it is written again" in output
    assert f"best checkpoint: none ({best} is missing" in output and not best.exists()


def test_real_only_turns_early_stopping_off_unless_patience_is_given(tiny_fakes, tmp_path, capsys):
    common = ["-d", str(tiny_fakes), "--out-dir", str(tmp_path / "out"), "--checkpoint-dir", str(tmp_path / "ck"),
              "--real-only", "--self-blend", "0.5"]
    args, recipe, _ = train_main.parse_args(common)
    assert args.patience == recipe.patience == 0
    assert "--real-only: early stopping off (--patience 0, not 4)" in capsys.readouterr().out
    args, recipe, _ = train_main.parse_args(common + ["--patience", "6"])
    assert args.patience == recipe.patience == 6 and "early stopping off" not in capsys.readouterr().out
    _, recipe, _ = train_main.parse_args(common[:-3])
    assert recipe.patience == 4  # with real fakes the recipe's patience stays


def test_real_only_pairs_each_real_with_its_pseudo_fake_unless_told_otherwise(tiny_fakes, tmp_path):
    common = ["-d", str(tiny_fakes), "--out-dir", str(tmp_path / "out"), "--checkpoint-dir", str(tmp_path / "ck"),
              "--self-blend", "0.5"]
    assert train_main.parse_args(common + ["--real-only"])[1].self_blend_pairs is True
    assert train_main.parse_args(common + ["--real-only", "--no-self-blend-pairs"])[1].self_blend_pairs is False
    assert train_main.parse_args(common + ["--real-only", "--no-cache"])[1].self_blend_pairs is False  # per item: none
    assert train_main.parse_args(common)[1].self_blend_pairs is False  # with real fakes: replaced, as before


def test_hull_masks_without_landmarks_under_real_only_say_so(tiny_fakes, tmp_path, capsys):
    assert train_main.main(["-d", str(tiny_fakes), "--out-dir", str(tmp_path / "out"), "--checkpoint-dir",
                            str(tmp_path / "ck"), "--cache-dir", str(tmp_path / "cache"), "--real-only",
                            "--self-blend", "0.5", "--self-blend-mask", "hull", "-e", "1", "--device", "cpu"]) == 1
    error = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error")]  # past the progress bars
    assert len(error) == 1 and "no training image has landmarks" in error[0]
    assert "--self-blend-mask hull-or-ellipse" in error[0]


@pytest.mark.parametrize("path_flags", [[], ["--no-cache"]])
def test_real_only_never_reads_a_fake_training_image(tiny_fakes, tmp_path, capsys, path_flags):
    dataset = shutil.copytree(tiny_fakes, tmp_path / "tiny_fakes")
    for path in (dataset / "train" / "fake").iterdir():
        path.write_bytes(b"not an image: reading it would be a warning")
    common = ["-d", str(dataset), "-e", "1", "-b", "8", "--device", "cpu", "--out-dir", str(tmp_path / "out"),
              "--checkpoint-dir", str(tmp_path / "ck"), "--cache-dir", str(tmp_path / "cache"), *path_flags]
    assert train_main.main(common + ["--real-only", "--self-blend", "0.5"]) == 0
    output = capsys.readouterr().out
    assert "train: 12 real images; their fakes are made by --self-blend 0.5" in output and "skipped" not in output
    history = json.loads((tmp_path / "out" / "tiny_fakes_SimpleNet_AdamW.json").read_text())
    assert history["config"]["real_only"] is True and history["config"]["self_blend"] == 0.5
    assert train_main.main(common + ["--overwrite"]) == 1  # without it the fakes are read, and none is readable
    assert "fake: no readable images left" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        train_main.main(common + ["--real-only"])
    assert exit_info.value.code == 2 and "--real-only needs --self-blend P" in capsys.readouterr().err
