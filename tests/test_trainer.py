import copy
import json
import math
import os
import re
import time
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from fakedetect.config.recipe import recipe_named
from fakedetect.data.augment import mixup_batch
from fakedetect.data.cache import DecodedFaces
from fakedetect.data.folders import FacesDataset
from fakedetect.io.files import CheckpointError
from fakedetect.io.runs import Run
from fakedetect.models.registry import build_model
from fakedetect.models.simplenet import SimpleNet
from fakedetect.train import trainer as trainer_module
from fakedetect.train.optim import build_optimizer, build_scheduler
from fakedetect.train.trainer import NonFiniteLossError, Runtime, Trainer, WeightAverage, seed_everything


def learnable_split(count, seed):
    """Dark noise images are real, bright noise images are fake."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(count) % 2
    base = torch.where(labels[:, None, None, None] == 1, 150, 60)
    images = (base + torch.randint(0, 60, (count, 3, 256, 256), generator=generator)).to(torch.uint8)
    return DecodedFaces(images, labels, [f"{i}.png" for i in range(count)], f"split{seed}")


def toy_run(directory, optimizer="Adam"):
    return Run("SimpleNet", "toy", optimizer, {"lr": 1e-4}, out_dir=directory / "out",
               checkpoint_dir=directory / "checkpoints")


def make_trainer(tmp_path, lr=1e-4, batch_size=7, seed=0, config=None, checkpoint_interval=0.0, workers=0,
                 splits=None, **recipe_options):
    """A SimpleNet trainer on learnable noise with the course recipe (Adam, constant rate, plain cross-entropy)
    and ``recipe_options``."""
    seed_everything(seed, deterministic=True)
    splits = splits or (learnable_split(30, 1), learnable_split(10, 2), learnable_split(10, 3))
    recipe = recipe_named("course", lr=lr, batch_size=batch_size, **recipe_options)
    runtime = Runtime(seed=seed, workers=workers, checkpoint_interval=checkpoint_interval, progress=False)
    return Trainer(SimpleNet(), splits, toy_run(tmp_path), recipe, runtime, config=config)


def test_loss_falls_and_outputs_are_complete_after_each_epoch(tmp_path):
    trainer = make_trainer(tmp_path)
    json_path, best_path, last_path = toy_run(tmp_path).files
    for epochs in (1, 2, 3):
        trainer.run(epochs)
        history = json.loads(json_path.read_text())
        assert all(len(history[key]) == epochs for key in ("train_loss", "val_acc", "test_auc", "epoch_seconds"))
        assert torch.load(last_path, weights_only=True)["epoch"] == epochs
        assert best_path.is_file()
    assert history["train_loss"][-1] < history["train_loss"][0]
    assert history["val_acc"][-1] == 1.0
    assert history["model"] == "SimpleNet" and history["optimizer"] == {"name": "Adam", "params": {"lr": 1e-4}}
    assert {"torch", "timm", "pillow", "numpy"} <= history["versions"].keys()


def test_averages_are_exact_per_sample_means(tmp_path):
    trainer = make_trainer(tmp_path, batch_size=4)  # 10 samples: batches of 4, 4, 2
    dataset = trainer.validation_dataset
    loss, accuracy = trainer.evaluate_model_on_dataloader(dataset)
    with torch.no_grad():
        images = (dataset.images.float() / 255 - 0.5) / 0.5
        logits = trainer.model.eval()(images)
    expected_loss = torch.nn.functional.cross_entropy(logits, dataset.labels).item()
    expected_accuracy = (logits.argmax(1) == dataset.labels).float().mean().item()
    assert loss == pytest.approx(expected_loss, rel=1e-5)
    assert accuracy == pytest.approx(expected_accuracy)
    assert trainer.validate() == (loss, accuracy)


def test_evaluation_loss_is_plain_cross_entropy_whatever_the_training_loss(tmp_path):
    plain = make_trainer(tmp_path / "plain")
    base = learnable_split(30, 1)
    keep = torch.cat([torch.nonzero(base.labels == 0)[:, 0], torch.nonzero(base.labels == 1)[:5, 0]])  # 15 real, 5 fake
    imbalanced = (DecodedFaces(base.images[keep], base.labels[keep], [base.files[i] for i in keep], "imbalanced"),
                  learnable_split(10, 2), learnable_split(10, 3))
    smoothed_and_weighted = make_trainer(tmp_path / "other", splits=imbalanced, label_smoothing=0.1,
                                         class_balance="weights")
    assert not torch.equal(smoothed_and_weighted.criterion.weight, torch.ones(2))
    for dataset in (plain.validation_dataset, plain.test_dataset):
        assert smoothed_and_weighted.evaluate(dataset)["loss"] == pytest.approx(plain.evaluate(dataset)["loss"],
                                                                                rel=1e-6)


def test_ties_keep_the_earlier_epoch(tmp_path, script_validation_accuracy):
    trainer = make_trainer(tmp_path)
    script_validation_accuracy(trainer, [0.6, 0.9, 0.9])
    history = trainer.run(3)
    _, best_path, _ = toy_run(tmp_path).files
    assert history["best_epoch"] == 2 and torch.load(best_path, weights_only=True)["epoch"] == 2


def test_the_best_checkpoint_holds_the_best_epochs_weights(tmp_path, monkeypatch, script_validation_accuracy):
    trainer = make_trainer(tmp_path)
    script_validation_accuracy(trainer, [0.6, 0.9, 0.7])
    weights_after = {}
    real_train_one_epoch = trainer.train_one_epoch

    def train_and_keep_the_weights():
        result = real_train_one_epoch()
        weights_after[trainer.epoch] = copy.deepcopy(trainer.model.state_dict())
        return result
    monkeypatch.setattr(trainer, "train_one_epoch", train_and_keep_the_weights)
    trainer.run(3)
    _, best_path, _ = toy_run(tmp_path).files
    best = torch.load(best_path, weights_only=True)["model"]
    assert all(torch.equal(value, best[key]) for key, value in weights_after[2].items())
    assert not all(torch.equal(value, best[key]) for key, value in weights_after[3].items())


def test_resume_keeps_the_best_epoch_and_the_patience_count(tmp_path, script_validation_accuracy):
    first = make_trainer(tmp_path, patience=2)
    script_validation_accuracy(first, [0.6, 0.9])
    first.run(2)
    resumed = make_trainer(tmp_path, patience=2)
    script_validation_accuracy(resumed, [0.7, 0.8, 0.95, 0.95])  # below epoch 2's 0.9 until it must have stopped
    history = resumed.run(6, resume=True)
    _, best_path, _ = toy_run(tmp_path).files
    assert history["val_acc"] == [0.6, 0.9, 0.7, 0.8]
    assert history["best_epoch"] == 2 and history["stopped_early"] == 4
    assert torch.load(best_path, weights_only=True)["epoch"] == 2


@pytest.mark.parametrize("metric, key", [("val_acc", "accuracy"), ("val_auc", "auc")])
def test_best_checkpoint_is_chosen_on_validation_only(tmp_path, monkeypatch, metric, key):
    trainer = make_trainer(tmp_path, selection_metric=metric)
    val_scores = iter([0.6, 0.9, 0.7])
    test_scores = iter([0.99, 0.1, 0.99])
    thresholds = iter([0.2, 0.3, 0.4, 0.8, 0.7, 0.6])  # val, test per epoch
    real_evaluate = trainer.evaluate

    def scripted(dataset):
        result = real_evaluate(dataset)
        result[key] = next(val_scores if dataset is trainer.validation_dataset else test_scores)
        result["eer_threshold"] = next(thresholds)
        return result
    monkeypatch.setattr(trainer, "evaluate", scripted)
    history = trainer.run(3)
    _, best_path, _ = toy_run(tmp_path).files
    assert history["best_epoch"] == 2 and history[metric] == [0.6, 0.9, 0.7]
    best = torch.load(best_path, weights_only=True)
    assert best["epoch"] == 2 and best[metric] == 0.9
    assert best["threshold"] == 0.4  # epoch 2's validation EER threshold, not its test one (0.8)


@pytest.mark.parametrize("interval, last_written", [(0, [1, 2, 3, 4, 5]), (1e9, [1, 2, 5])])
def test_checkpoint_interval_writes_the_last_checkpoint_at_new_bests_and_the_end(
        tmp_path, monkeypatch, script_validation_accuracy, interval, last_written):
    trainer = make_trainer(tmp_path, checkpoint_interval=interval)
    script_validation_accuracy(trainer, [0.6, 0.9, 0.7, 0.8, 0.5])  # new bests at epochs 1 and 2
    written = record_checkpoint_writes(monkeypatch)
    history = trainer.run(5)
    assert written == last_written
    assert history["best_epoch"] == 2


def record_checkpoint_writes(monkeypatch):
    """Epochs of the last checkpoints written from now on (the list fills as the trainer writes)."""
    written = []
    real_save = trainer_module.save_checkpoint

    def save(path, checkpoint):
        if path.name.endswith("_last.pt"):
            written.append(checkpoint["epoch"])
        real_save(path, checkpoint)
    monkeypatch.setattr(trainer_module, "save_checkpoint", save)
    return written


def test_checkpoint_interval_counts_from_the_last_write(tmp_path, monkeypatch, script_validation_accuracy):
    trainer = make_trainer(tmp_path, checkpoint_interval=60)
    script_validation_accuracy(trainer, [0.9] + [0.5] * 6)  # the only new best is epoch 1
    clock = SimpleNamespace(perf_counter=time.perf_counter, monotonic=lambda: 25.0 * trainer.epoch)  # 25 s epochs
    monkeypatch.setattr(trainer_module, "time", clock)
    written = record_checkpoint_writes(monkeypatch)
    trainer.run(7)
    assert written == [1, 4, 7]  # epoch 4 is 75 s after the write at epoch 1; 5 and 6 under 60 s after epoch 4's


def test_a_run_stopped_early_writes_its_last_checkpoint(tmp_path, monkeypatch, script_validation_accuracy):
    trainer = make_trainer(tmp_path, checkpoint_interval=1e9, patience=2)
    script_validation_accuracy(trainer, [0.9, 0.5, 0.5])
    written = record_checkpoint_writes(monkeypatch)
    trainer.run(6)
    _, _, last_path = toy_run(tmp_path).files
    assert written == [1, 3]
    assert torch.load(last_path, weights_only=True)["history"]["stopped_early"] == 3


def test_resume_redoes_the_epochs_after_the_last_checkpoint(tmp_path, monkeypatch, script_validation_accuracy):
    uninterrupted = make_trainer(tmp_path / "a")
    uninterrupted.run(4)

    crashed = make_trainer(tmp_path / "b", checkpoint_interval=1e9)
    script_validation_accuracy(crashed, [0.6, 0.9, 0.7])
    real_train_one_epoch = crashed.train_one_epoch

    def crash_in_epoch_4():
        if crashed.epoch == 4:
            raise KeyboardInterrupt
        return real_train_one_epoch()
    monkeypatch.setattr(crashed, "train_one_epoch", crash_in_epoch_4)
    with pytest.raises(KeyboardInterrupt):
        crashed.run(4)
    json_path, _, last_path = toy_run(tmp_path / "b").files
    assert len(json.loads(json_path.read_text())["train_loss"]) == 3  # the JSON ran ahead of the checkpoint
    assert torch.load(last_path, weights_only=True)["epoch"] == 2

    make_trainer(tmp_path / "b", checkpoint_interval=1e9).run(2, resume=True)  # nothing left to run
    assert len(json.loads(json_path.read_text())["train_loss"]) == 2  # the JSON is back in step with the checkpoint

    resumed = make_trainer(tmp_path / "b", seed=123, checkpoint_interval=1e9)
    history = resumed.run(4, resume=True)
    for key, value in uninterrupted.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[key]), key
    assert history["train_loss"] == uninterrupted.history["train_loss"]
    assert json.loads(json_path.read_text())["train_loss"] == uninterrupted.history["train_loss"]


def test_resume_refuses_changed_training_settings_but_not_placement(tmp_path):
    config = {"train_fraction": 0.5, "batch_size": 8, "lr": 1e-3, "epochs": 2, "device": "cpu", "workers": 2,
              "normalization_mean_std": [[0.5], [0.5]], "weights": "a/r.pth"}
    make_trainer(tmp_path, config=config).run(1)
    for key, value, shown in (("train_fraction", 1.0, "--train-fraction 0.5 (now 1.0)"),
                              ("batch_size", 16, "--batch-size 8 (now 16)"),
                              ("lr", 5e-4, "--lr 0.001 (now 0.0005)"),
                              ("epochs", 3, "--epochs 2 (now 3)"),
                              ("normalization_mean_std", [[0.4], [0.2]],
                               "the input normalization (mean, std) [[0.5], [0.5]] (now [[0.4], [0.2]])")):
        with pytest.raises(CheckpointError, match=re.escape(f"holds a run with {shown}; resume with the run's own")):
            make_trainer(tmp_path, config={**config, key: value}).run(2, resume=True)
    moved = {**config, "device": "cuda", "workers": 0, "weights": "b/r.pth"}
    history = make_trainer(tmp_path, config=moved).run(2, resume=True)
    assert len(history["train_loss"]) == 2


def test_a_damaged_last_checkpoint_says_to_start_a_new_run(tmp_path):
    make_trainer(tmp_path).run(1)
    _, _, last_path = toy_run(tmp_path).files
    data = last_path.read_bytes()
    last_path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=re.escape(f"{last_path}: not a loadable checkpoint (")
                       + r".*\); start a new run instead \(--overwrite"):
        make_trainer(tmp_path).run(2, resume=True)


def test_a_fresh_run_removes_the_last_checkpoint_it_replaces(tmp_path):
    make_trainer(tmp_path).run(1)
    _, _, last_path = toy_run(tmp_path).files
    assert last_path.exists()
    other_run = toy_run(tmp_path, "AdamW")  # its name starts with this run's name
    stale_of_another_run = last_path.parent / f".{other_run.name}_last.pt.x1.tmp"
    stale_of_this_run = last_path.parent / f".{last_path.name}.x2.tmp"
    stale_config = toy_run(tmp_path).config_path.parent / f".{toy_run(tmp_path).config_path.name}.x3.tmp"
    stale_of_another_run.touch()
    stale_of_this_run.touch()
    stale_config.touch()
    trainer = make_trainer(tmp_path)
    trainer.train_one_epoch = lambda: (_ for _ in ()).throw(KeyboardInterrupt)  # killed in its first epoch
    with pytest.raises(KeyboardInterrupt):
        trainer.run(1)
    assert not last_path.exists() and not stale_of_this_run.exists() and not stale_config.exists()
    assert stale_of_another_run.exists()


def test_resume_matches_an_uninterrupted_run(tmp_path, capsys):
    uninterrupted = make_trainer(tmp_path / "a")
    uninterrupted.run(3)

    interrupted = make_trainer(tmp_path / "b")
    interrupted.run(2)
    resumed = make_trainer(tmp_path / "b", seed=123)  # a fresh process: state must come from the checkpoint
    capsys.readouterr()
    history = resumed.run(3, resume=True)
    assert "warning" not in capsys.readouterr().out  # the best checkpoint is the resumed run's best
    assert len(history["train_loss"]) == 3
    for key, value in uninterrupted.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[key]), key
    json_a = json.loads((tmp_path / "a" / "out" / "toy_SimpleNet_Adam.json").read_text())
    assert history["train_loss"] == json_a["train_loss"]


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    trainer = make_trainer(tmp_path)
    trainer.run(1)
    _, _, last_path = toy_run(tmp_path).files
    good = torch.load(last_path, weights_only=True)
    for group in trainer.optimizer.param_groups:
        group["lr"] = 1e12
    with pytest.raises(NonFiniteLossError, match=r"epoch 2, step \d+"):
        trainer.run(3)
    kept = torch.load(last_path, weights_only=True)
    assert kept["epoch"] == 1 and torch.equal(kept["model"]["fc3.weight"], good["model"]["fc3.weight"])
    assert len(json.loads((tmp_path / "out" / "toy_SimpleNet_Adam.json").read_text())["train_loss"]) == 1


@pytest.mark.parametrize("workers", [0, 2])  # 0: the augmentations draw from torch's global generator
def test_resume_on_the_per_item_path_matches_an_uninterrupted_run(tiny_fakes, tmp_path, workers):
    def per_item_trainer(directory, seed=0):
        splits = [FacesDataset(tiny_fakes / split) for split in ("train", "val", "test")]
        return make_trainer(directory, batch_size=8, seed=seed, workers=workers, splits=splits)
    uninterrupted = per_item_trainer(tmp_path / "a")
    uninterrupted.run(2)
    per_item_trainer(tmp_path / "b").run(1)
    resumed = per_item_trainer(tmp_path / "b", seed=123)  # a fresh process: the random state must come from the checkpoint
    history = resumed.run(2, resume=True)
    assert history["train_loss"] == uninterrupted.history["train_loss"]
    for key, value in uninterrupted.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[key]), key


def test_a_last_checkpoint_whose_state_does_not_fit_says_to_start_a_new_run(tmp_path):
    make_trainer(tmp_path).run(1)
    _, _, last_path = toy_run(tmp_path).files
    state = torch.load(last_path, weights_only=True)
    del state["model"]["fc3.weight"]
    torch.save(state, last_path)
    with pytest.raises(CheckpointError, match=re.escape(f"{last_path}: its saved state does not fit this run (Missing "
                                                        "key(s) in state_dict: \"fc3.weight\"") + r".*start a new run"):
        make_trainer(tmp_path).run(2, resume=True)
    state["model"] = make_trainer(tmp_path / "other").model.state_dict()
    state["generator"] = torch.zeros(3)
    torch.save(state, last_path)
    with pytest.raises(CheckpointError, match=r"its saved state does not fit this run \(.*\); start a new run"):
        make_trainer(tmp_path).run(2, resume=True)
    del state["generator"]
    torch.save(state, last_path)
    with pytest.raises(CheckpointError, match=r"not a checkpoint of this toolkit; expected .*'generator'.*start a new"):
        make_trainer(tmp_path).run(2, resume=True)


def test_evaluation_draws_nothing_from_the_training_random_stream(tiny_fakes, tmp_path):
    splits = [FacesDataset(tiny_fakes / split) for split in ("train", "val", "test")]
    trainer = make_trainer(tmp_path, batch_size=8, splits=splits)
    before = trainer.generator.get_state()
    trainer.validate()
    trainer.test()
    assert torch.equal(trainer.generator.get_state(), before)


def test_deterministic_mode_makes_cublas_deterministic_too(monkeypatch):
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    seed_everything(0, deterministic=True)
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"


def test_resume_warns_when_the_best_checkpoint_is_of_an_epoch_it_redoes(tmp_path, monkeypatch, capsys,
                                                                         script_validation_accuracy):
    first = make_trainer(tmp_path)
    script_validation_accuracy(first, [0.6, 0.9])
    real_save = trainer_module.save_checkpoint

    def killed_before_the_last_checkpoint_of_epoch_2(path, checkpoint):
        if path.name.endswith("_last.pt") and checkpoint["epoch"] == 2:
            raise KeyboardInterrupt
        real_save(path, checkpoint)
    monkeypatch.setattr(trainer_module, "save_checkpoint", killed_before_the_last_checkpoint_of_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        first.run(3)
    monkeypatch.setattr(trainer_module, "save_checkpoint", real_save)
    capsys.readouterr()
    resumed = make_trainer(tmp_path)
    script_validation_accuracy(resumed, [0.5, 0.5])  # the redone epoch 2 is no longer the best
    history = resumed.run(3, resume=True)
    _, best_path, _ = toy_run(tmp_path).files
    assert f"warning: {best_path} holds epoch 2, which this resume redoes" in capsys.readouterr().out
    assert history["best_epoch"] == 1

    best_path.write_bytes(b"damaged")  # a best checkpoint that cannot be read does not stop a resume
    resumed = make_trainer(tmp_path)
    assert len(resumed.run(4, resume=True)["train_loss"]) == 4
    assert f"warning: {best_path}: not a loadable checkpoint" in capsys.readouterr().out


def toy_split(count, seed, fake_share=0.5):
    """Dark noise images are real, bright noise images are fake."""
    generator = torch.Generator().manual_seed(seed)
    labels = (torch.arange(count) < round(count * fake_share)).long()
    base = torch.where(labels[:, None, None, None] == 1, 150, 60)
    images = (base + torch.randint(0, 60, (count, 3, 256, 256), generator=generator)).to(torch.uint8)
    return DecodedFaces(images, labels, [f"{i}.png" for i in range(count)], f"split{seed}")


def toy_trainer(tmp_path, seed=0, epochs=2, lr=1e-4, model="SimpleNet", **recipe_options):
    """A trainer (SimpleNet by default) on noise: AdamW, one warm-up epoch then cosine, label smoothing 0.1, batch 8."""
    seed_everything(seed, deterministic=True)
    options = {"class_balance": "none", "patience": 0, "clip_grad_norm": 0.0, "selection_metric": "val_acc",
               **recipe_options}
    recipe = recipe_named("improved", lr=lr, batch_size=8, epochs=epochs, **options)
    run = Run(model, "toy", "AdamW", {"lr": lr}, out_dir=tmp_path / "out", checkpoint_dir=tmp_path / "ck")
    return Trainer(build_model(model), (toy_split(16, 1), toy_split(6, 2), toy_split(6, 3)), run, recipe,
                   Runtime(seed=seed, progress=False))


def test_scheduler_is_stepped_every_iteration():
    optimizer = build_optimizer("AdamW", [torch.nn.Parameter(torch.zeros(1))], 1e-3, weight_decay=0.05)
    scheduler = build_scheduler(optimizer, "cosine", total_steps=20, warmup_steps=4)
    rates = []
    for _ in range(20):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert rates[:4] == pytest.approx([2.5e-4, 5e-4, 7.5e-4, 1e-3])
    assert rates[12] == pytest.approx(5e-4)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)
    assert build_scheduler(optimizer, "constant", 20, 0) is None


@pytest.mark.parametrize("options", [{}, {"mixup": 0.4, "ema": 0.9}, {"self_blend": 0.5}])
def test_resume_continues_the_schedule_exactly(tmp_path, options):
    uninterrupted = toy_trainer(tmp_path / "a", epochs=3, **options)
    history = uninterrupted.run(3)
    interrupted = toy_trainer(tmp_path / "b", epochs=3, **options)
    interrupted.run(1)
    resumed = toy_trainer(tmp_path / "b", seed=7, epochs=3, **options)  # a fresh process
    resumed_history = resumed.run(3, resume=True)
    assert resumed_history["lr"] == pytest.approx(history["lr"])
    assert resumed.scheduler.last_epoch == uninterrupted.scheduler.last_epoch == 6
    assert resumed_history["train_loss"] == history["train_loss"]
    for key, value in uninterrupted.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[key]), key
    assert resumed.steps == uninterrupted.steps == 6
    if "ema" in options:
        for key, value in uninterrupted.average.module.state_dict().items():
            assert torch.equal(value, resumed.average.module.state_dict()[key]), key


def test_pairs_and_the_mask_loss_resume_exactly(tmp_path):
    options = dict(model="SeamNet-8x1", epochs=3, lr=1e-3, self_blend=1.0, self_blend_pairs=True, mask_loss=0.5,
                   self_blend_mask="ellipse")
    uninterrupted = toy_trainer(tmp_path / "a", **options)
    history = uninterrupted.run(3)
    interrupted = toy_trainer(tmp_path / "b", **options)
    interrupted.run(1)
    resumed = toy_trainer(tmp_path / "b", seed=7, **options)  # a fresh process
    assert resumed.run(3, resume=True)["train_loss"] == history["train_loss"]
    for key, value in uninterrupted.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[key]), key
    assert resumed.steps == uninterrupted.steps == 12  # 16 images, 8 reals: 4 drawn a step with their 4 partners


def test_pairs_batches_hold_each_real_with_its_pseudo_fake_augmented_alike(tmp_path):
    trainer = toy_trainer(tmp_path, model="SeamNet-8x1", self_blend=1.0, self_blend_pairs=True, mask_loss=1.0,
                          self_blend_mask="ellipse")
    trainer.train_batches.set_epoch(1)
    batches = list(trainer.train_batches)
    assert len(batches) == len(trainer.train_batches) == 4
    for images, labels, masks in batches:
        reals = (labels == 0).sum()
        assert len(labels) == 4 + reals and labels[4:].eq(1).all()  # 4 drawn, then each real's pseudo-fake
        drawn_reals = images[:4][labels[:4] == 0]
        partners = images[4:]
        # the pseudo-fake differs from its real only inside its mask: crop and flip were the same
        outside = masks[4:] == 0
        assert torch.equal((drawn_reals * outside), (partners * outside))
        assert masks[:4][labels[:4] == 0].eq(0).all()
        assert masks[:4][labels[:4] == 1].isnan().flatten(1).any(1).all()  # a fake's unknown mask is never used


def test_mask_loss_leaves_out_unknown_masks_and_can_ask_for_the_boundary():
    logits = torch.zeros(3, 1, 2, 2, requires_grad=True)
    masks = torch.zeros(3, 1, 8, 8)
    masks[1] = 1.0
    masks[2] = math.nan  # a fake without a known mask
    loss = trainer_module.mask_loss(logits, masks)
    assert loss.item() == pytest.approx(math.log(2))
    loss.backward()
    assert logits.grad[2].eq(0).all() and logits.grad[:2].ne(0).all()
    boundary = trainer_module.mask_loss(torch.full((1, 1, 2, 2), 10.0), torch.full((1, 1, 8, 8), 0.5), "boundary")
    assert boundary.item() == pytest.approx(math.log1p(math.exp(-10)), rel=1e-4)  # 4M(1-M) = 1: -log(sigmoid(10))
    none_known = trainer_module.mask_loss(logits, torch.full((3, 1, 8, 8), math.nan))
    assert none_known.item() == 0 and none_known.requires_grad


def test_weight_average_warms_up_to_its_decay():
    average = WeightAverage(torch.nn.Linear(2, 2), 0.999)
    assert average.decay_at(0) == 0  # the first step copies the weights
    assert average.decay_at(1) == pytest.approx(1 - 2 ** -0.75)
    assert average.decay_at(99) == pytest.approx(1 - 100 ** -0.75)
    assert average.decay_at(10 ** 6) == 0.999


def test_trainer_validates_and_checkpoints_the_weight_average(tmp_path):
    trainer = toy_trainer(tmp_path, ema=0.6)
    snapshots, step = [], trainer.optimizer.step

    def recording_step(*args, **kwargs):
        result = step(*args, **kwargs)
        snapshots.append({key: value.clone() for key, value in trainer.model.state_dict().items()})
        return result
    trainer.optimizer.step = recording_step
    trainer.run(1)
    expected = snapshots[0]
    for index, snapshot in enumerate(snapshots[1:], start=1):
        decay = min(0.6, 1 - (1 + index) ** -0.75)
        expected = {key: decay * value + (1 - decay) * snapshot[key] if value.is_floating_point() else snapshot[key]
                    for key, value in expected.items()}
    average = trainer.average.module.state_dict()
    for key, value in expected.items():
        assert torch.allclose(average[key], value, atol=1e-6), key
    assert not torch.equal(average["fc2.weight"], trainer.model.state_dict()["fc2.weight"])
    best_path = tmp_path / "ck" / "toy_SimpleNet_AdamW.pt"
    best = torch.load(best_path, weights_only=True)["model"]
    assert all(torch.equal(best[key], value) for key, value in average.items())
    validation = trainer.evaluate(trainer.validation_dataset)
    images = (trainer.validation_dataset.images.float() / 255 - 0.5) / 0.5
    with torch.no_grad():
        scores = torch.softmax(trainer.average.module(images), 1)[:, 1].numpy()
    assert np.allclose(validation["scores"], scores, atol=1e-5)


def test_early_stopping_stops_and_keeps_the_best_checkpoint(tmp_path, script_validation_accuracy):
    trainer = toy_trainer(tmp_path, epochs=6, patience=2)
    script_validation_accuracy(trainer, [0.6, 0.9, 0.8, 0.7, 0.95, 0.95])
    history = trainer.run(6)
    assert len(history["train_loss"]) == 4 and history["stopped_early"] == 4 and history["best_epoch"] == 2
    json_path, best_path, last_path = trainer.run_files.files
    assert torch.load(best_path, weights_only=True)["epoch"] == 2
    assert json.loads(json_path.read_text())["stopped_early"] == 4
    resumed = toy_trainer(tmp_path, epochs=6, patience=2)
    assert len(resumed.run(6, resume=True)["train_loss"]) == 4  # a stopped run stays stopped


def test_gradient_clipping_bounds_the_norm(tmp_path):
    def step_norms(clip):
        trainer = toy_trainer(tmp_path / str(clip), lr=1e-2, clip_grad_norm=clip)
        norms, step = [], trainer.optimizer.step

        def recording_step(*args, **kwargs):
            norms.append(torch.linalg.vector_norm(torch.stack(
                [p.grad.norm() for p in trainer.model.parameters() if p.grad is not None])).item())
            return step(*args, **kwargs)
        trainer.optimizer.step = recording_step
        trainer.train_one_epoch()
        return norms
    assert max(step_norms(0.0)) > 0.05
    assert max(step_norms(0.05)) <= 0.05 * (1 + 1e-4)


def test_trainer_feeds_mixed_images_and_mixes_the_loss(tmp_path, monkeypatch):
    trainer = toy_trainer(tmp_path, mixup=0.4)
    trainer.train_batches.batch_size = 16  # one step: the epoch's loss is that step's loss
    mixes, inputs, losses = [], [], []

    def recording_mixup(images, labels, alpha, generator):
        result = mixup_batch(images, labels, alpha, generator)
        mixes.append((alpha, labels, *result))
        return result
    monkeypatch.setattr(trainer_module, "mixup_batch", recording_mixup)
    forward = trainer.forward
    trainer.forward = lambda images: inputs.append(images.clone()) or forward(images)
    criterion = trainer.criterion
    trainer.criterion = lambda logits, labels: losses.append((logits.detach(), labels)) or criterion(logits, labels)
    train_loss, _ = trainer.train_one_epoch()
    (alpha, labels, mixed, partners, lam), = mixes
    assert alpha == 0.4 and torch.equal(inputs[0], mixed)
    assert [pair[1].tolist() for pair in losses] == [labels.tolist(), partners.tolist()]
    expected = lam * criterion(losses[0][0], labels) + (1 - lam) * criterion(losses[0][0], partners)
    assert train_loss == pytest.approx(expected.item(), rel=1e-5)
