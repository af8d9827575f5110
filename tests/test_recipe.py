"""The training recipes: schedule, optimizer, class balance, early stopping, gradient clipping,
augmentations on both data paths, mixup, stochastic depth, normalization, --recipe course, timm
models and patch detectors."""
import argparse
import json
import math
import shutil

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms as T
from torchvision.transforms import functional as TF

import grad_cam_analysis
import results_table
import train_main
import trainer as trainer_module
from augment import (CROP_ASPECT, CROP_PADDING, ERASE_AREA, AugmentConfig, Augmenter, ItemAugment, color_jitter,
                     draw_crop_flip, draw_resized_boxes, gaussian_blur, jpeg_recompress, mixup_batch,
                     resized_crop_flip)
from faces_dataset import (DecodedFaces, FacesDataset, balanced_sample_weights, channel_statistics, decode_dataset,
                           item_transform, make_batches)
from fileio import CheckpointError
from models import SimpleNet, build_model, load_trained_model, model_name, model_name_error
from recipe import (CIFAR10_NORMALIZATION, RECIPES, build_optimizer, build_scheduler, class_weights, lr_factor,
                    resolve_normalization)
from trainer import LoggingParameters, Trainer, WeightAverage, model_file_name, output_paths, seed_everything

PARAMETERS = LoggingParameters("SimpleNet", "toy", "AdamW", {"lr": 1e-4})


def toy_split(count, seed, fake_share=0.5):
    """Dark noise images are real, bright noise images are fake."""
    generator = torch.Generator().manual_seed(seed)
    labels = (torch.arange(count) < round(count * fake_share)).long()
    base = torch.where(labels[:, None, None, None] == 1, 150, 60)
    images = (base + torch.randint(0, 60, (count, 3, 256, 256), generator=generator)).to(torch.uint8)
    return DecodedFaces(images, labels, [f"{i}.png" for i in range(count)], f"split{seed}")


def toy_trainer(tmp_path, seed=0, epochs=2, lr=1e-4, **options):
    seed_everything(seed, deterministic=True)
    model = SimpleNet()
    optimizer = build_optimizer("AdamW", model.parameters(), lr, weight_decay=0.05)
    train = toy_split(16, 1)
    steps_per_epoch = math.ceil(len(train) / 8)
    scheduler = build_scheduler(optimizer, "cosine", epochs * steps_per_epoch, warmup_steps=2)
    return Trainer(model, optimizer, torch.nn.CrossEntropyLoss(label_smoothing=0.1), 8, train, toy_split(6, 2),
                   toy_split(6, 3), seed=seed, out_dir=tmp_path / "out", checkpoint_dir=tmp_path / "ck",
                   progress=False, scheduler=scheduler, **options)


def test_warmup_cosine_values_at_given_steps():
    assert lr_factor("cosine", 0, 110, 10) == pytest.approx(0.1)
    assert lr_factor("cosine", 9, 110, 10) == pytest.approx(1.0)
    assert lr_factor("cosine", 10, 110, 10) == pytest.approx(1.0)
    assert lr_factor("cosine", 60, 110, 10) == pytest.approx(0.5)
    assert lr_factor("cosine", 110, 110, 10) == pytest.approx(0.0)
    assert lr_factor("cosine", 35, 110, 0) == pytest.approx(0.5 * (1 + math.cos(math.pi * 35 / 110)))
    assert lr_factor("constant", 4, 110, 10) == pytest.approx(0.5)
    assert lr_factor("constant", 50, 110, 10) == 1.0


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


@pytest.mark.parametrize("options", [{}, {"mixup": 0.4, "ema_decay": 0.9}])
def test_resume_continues_the_schedule_exactly(tmp_path, options):
    uninterrupted = toy_trainer(tmp_path / "a", epochs=3, **options)
    history = uninterrupted.run(3, PARAMETERS)
    interrupted = toy_trainer(tmp_path / "b", epochs=3, **options)
    interrupted.run(1, PARAMETERS)
    resumed = toy_trainer(tmp_path / "b", seed=7, epochs=3, **options)  # a fresh process
    resumed_history = resumed.run(3, PARAMETERS, resume=True)
    assert resumed_history["lr"] == pytest.approx(history["lr"])
    assert resumed.scheduler.last_epoch == uninterrupted.scheduler.last_epoch == 6
    assert resumed_history["train_loss"] == history["train_loss"]
    for key, value in uninterrupted.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[key]), key
    if options:
        assert resumed.steps == uninterrupted.steps == 6
        for key, value in uninterrupted.average.module.state_dict().items():
            assert torch.equal(value, resumed.average.module.state_dict()[key]), key


def test_weight_average_warms_up_to_its_decay():
    average = WeightAverage(torch.nn.Linear(2, 2), 0.999)
    assert average.decay_at(0) == 0  # the first step copies the weights
    assert average.decay_at(1) == pytest.approx(1 - 2 ** -0.75)
    assert average.decay_at(99) == pytest.approx(1 - 100 ** -0.75)
    assert average.decay_at(10 ** 6) == 0.999


def test_trainer_validates_and_checkpoints_the_weight_average(tmp_path):
    trainer = toy_trainer(tmp_path, ema_decay=0.6)
    snapshots, step = [], trainer.optimizer.step

    def recording_step(*args, **kwargs):
        result = step(*args, **kwargs)
        snapshots.append({key: value.clone() for key, value in trainer.model.state_dict().items()})
        return result
    trainer.optimizer.step = recording_step
    trainer.run(1, PARAMETERS)
    expected = snapshots[0]
    for index, snapshot in enumerate(snapshots[1:], start=1):
        decay = min(0.6, 1 - (1 + index) ** -0.75)
        expected = {key: decay * value + (1 - decay) * snapshot[key] if value.is_floating_point() else snapshot[key]
                    for key, value in expected.items()}
    average = trainer.average.module.state_dict()
    for key, value in expected.items():
        assert torch.allclose(average[key], value, atol=1e-6), key
    assert not torch.equal(average["fc2.weight"], trainer.model.state_dict()["fc2.weight"])
    _, best_path, _ = output_paths(PARAMETERS, tmp_path / "out", tmp_path / "ck")
    best = torch.load(best_path, weights_only=True)["model"]
    assert all(torch.equal(best[key], value) for key, value in average.items())
    validation = trainer.evaluate(trainer.validation_dataset)
    images = (trainer.validation_dataset.images.float() / 255 - 0.5) / 0.5
    with torch.no_grad():
        scores = torch.softmax(trainer.average.module(images), 1)[:, 1].numpy()
    assert np.allclose(validation["scores"], scores, atol=1e-5)


def test_balanced_sampler_draws_both_classes_equally_on_both_paths(tiny_fakes):
    labels = torch.tensor([0] * 90 + [1] * 10)
    weights = balanced_sample_weights(labels)
    decoded = DecodedFaces(torch.zeros(100, 3, 8, 8, dtype=torch.uint8), labels, [""] * 100, "x")
    batches = make_batches(decoded, 50, "cpu", (0.5,) * 3, (0.5,) * 3, True, torch.Generator().manual_seed(0),
                           augment=AugmentConfig(crop="none", flip=False), sample_weights=weights)
    drawn = torch.cat([batch_labels for _ in range(20) for _, batch_labels in batches])
    assert abs(drawn.float().mean().item() - 0.5) < 0.03
    dataset = FacesDataset(tiny_fakes / "train")
    dataset.labels = [0] * 20 + [1] * 4  # a 5:1 split, files unread
    item_batches = make_batches(dataset, 8, "cpu", (0.5,) * 3, (0.5,) * 3, True, torch.Generator().manual_seed(0),
                                sample_weights=balanced_sample_weights(dataset.labels))
    drawn = [dataset.labels[i] for _ in range(200) for i in item_batches.loader.sampler]
    assert abs(np.mean(drawn) - 0.5) < 0.03


def test_class_weights_equalize_the_classes():
    weights = class_weights([0] * 90 + [1] * 10)
    assert weights.tolist() == pytest.approx([100 / 180, 100 / 20])
    assert (weights * torch.tensor([90.0, 10.0])).tolist() == pytest.approx([50.0, 50.0])


def parse(tiny_fakes, tmp_path, *flags):
    args, _ = train_main.parse_args(["-d", str(tiny_fakes), "--out-dir", str(tmp_path / "out"),
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
    assert trainer.scheduler is None and (trainer.clip_grad_norm, trainer.patience, trainer.mixup) == (0, 0, 0)
    assert trainer.criterion.weight is None and trainer.criterion.label_smoothing == 0
    assert trainer.selection_metric == "val_acc" and trainer.average is None
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


def test_dataset_statistics_are_the_same_on_both_paths(tiny_fakes):
    dataset = FacesDataset(tiny_fakes / "train")
    decoded = decode_dataset(dataset, cache_dir=None, progress=False)
    mean, std = channel_statistics(decoded)
    assert (mean, std) == channel_statistics(dataset)
    pixels = decoded.images.double() / 255
    assert mean == pytest.approx(pixels.mean((0, 2, 3)).tolist(), abs=1e-4)
    assert std == pytest.approx(pixels.std((0, 2, 3)).tolist(), abs=1e-3)


def test_early_stopping_stops_and_keeps_the_best_checkpoint(tmp_path, script_validation_accuracy):
    trainer = toy_trainer(tmp_path, epochs=6, patience=2)
    script_validation_accuracy(trainer, [0.6, 0.9, 0.8, 0.7, 0.95, 0.95])
    history = trainer.run(6, PARAMETERS)
    assert len(history["train_loss"]) == 4 and history["stopped_early"] == 4 and history["best_epoch"] == 2
    json_path, best_path, last_path = output_paths(PARAMETERS, tmp_path / "out", tmp_path / "ck")
    assert torch.load(best_path, weights_only=True)["epoch"] == 2
    assert json.loads(json_path.read_text())["stopped_early"] == 4
    resumed = toy_trainer(tmp_path, epochs=6, patience=2)
    assert len(resumed.run(6, PARAMETERS, resume=True)["train_loss"]) == 4  # a stopped run stays stopped


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


def test_default_augmentation_draws_as_the_course_path_did():
    """Crop + flip alone draws exactly what draw_crop_flip drew, and nothing else."""
    params = Augmenter(AugmentConfig()).draw(50, torch.Generator().manual_seed(4))
    offsets, flips = draw_crop_flip(50, torch.Generator().manual_seed(4))
    assert set(params) == {"offsets", "flips"}
    assert torch.equal(params["offsets"], offsets) and torch.equal(params["flips"], flips)


def test_native_crop_keeps_resolution_on_both_paths():
    images = torch.randint(0, 256, (5, 3, 256, 256), dtype=torch.uint8)
    augmenter = Augmenter(AugmentConfig(crop="native", crop_size=224, flip=False))
    params = augmenter.draw(5, torch.Generator().manual_seed(0))
    out = augmenter(images, params)
    assert out.shape == (5, 3, 224, 224) and out.dtype == torch.uint8
    for image, crop, (top, left) in zip(images, out, params["offsets"].T.tolist()):
        assert 0 <= top <= 32 and torch.equal(crop, image[:, top:top + 224, left:left + 224])
    transform = item_transform((0.0,) * 3, (1 / 255,) * 3, True, AugmentConfig(crop="native", crop_size=224))
    item = transform(Image.fromarray(images[0].permute(1, 2, 0).numpy()))
    assert item.shape == (3, 224, 224) and item.dtype == torch.float32


def test_resized_crop_windows_follow_torchvision_random_resized_crop():
    """Areas in [scale, 1] of the image, aspect ratios in [3/4, 4/3], inside the image, and the
    same mean area and position as torchvision's RandomResizedCrop.get_params draws."""
    top, left, height, width = draw_resized_boxes(20000, 256, 0.25, torch.Generator().manual_seed(0)).double()
    area = height * width / 256 ** 2
    assert area.min() >= 0.245 and area.max() <= 1 and (top >= 0).all() and (left >= 0).all()
    assert (top + height).max() <= 256 and (left + width).max() <= 256
    assert CROP_ASPECT[0] - 0.01 <= (width / height).min() and (width / height).max() <= CROP_ASPECT[1] + 0.01
    torch.manual_seed(0)
    reference = torch.tensor([T.RandomResizedCrop.get_params(torch.zeros(3, 256, 256), (0.25, 1.0), CROP_ASPECT)
                              for _ in range(5000)], dtype=torch.float64)
    assert abs(area.mean() - (reference[:, 2] * reference[:, 3] / 256 ** 2).mean()) < 0.01
    assert abs(top.mean() - reference[:, 0].mean()) < 2


def test_resized_crop_resizes_each_window_as_torchvision_does_and_flips():
    images = torch.randint(0, 256, (3, 3, 256, 256), dtype=torch.uint8)
    whole = torch.tensor([[0] * 3, [0] * 3, [256] * 3, [256] * 3])
    assert torch.equal(resized_crop_flip(images, whole, torch.zeros(3, dtype=torch.bool)), images)
    assert torch.equal(resized_crop_flip(images, whole, torch.ones(3, dtype=torch.bool)), images.flip(3))
    window = torch.tensor([[10], [30], [100], [120]])
    out = resized_crop_flip(images[:1], window, torch.zeros(1, dtype=torch.bool))[0]
    expected = TF.resized_crop(images[0], 10, 30, 100, 120, [256, 256], antialias=False)
    assert torch.equal(out[:, 4:-4, 4:-4], expected[:, 4:-4, 4:-4])  # the edges read one pixel beyond the window


def test_resized_crop_is_a_random_resized_crop_on_both_paths():
    config = AugmentConfig(crop="resized", crop_scale=0.5)
    augmenter = Augmenter(config)
    images = torch.randint(0, 256, (4, 3, 256, 256), dtype=torch.uint8)
    params = augmenter.draw(4, torch.Generator().manual_seed(0))
    assert set(params) == {"boxes", "flips"}
    out = augmenter(images, params)
    assert out.shape == images.shape and out.dtype == torch.uint8
    assert torch.equal(out, resized_crop_flip(images, params["boxes"], params["flips"]))
    transform = item_transform((0.0,) * 3, (1 / 255,) * 3, True, config)
    crops = [step for step in transform.transforms if isinstance(step, T.RandomResizedCrop)]
    assert len(crops) == 1 and crops[0].scale == (0.5, 1.0) and crops[0].ratio == CROP_ASPECT
    assert transform(Image.fromarray(images[0].permute(1, 2, 0).numpy())).shape == (3, 256, 256)


def test_color_jitter_matches_torchvision():
    image = torch.randint(0, 256, (3, 64, 64), dtype=torch.uint8)
    factors = torch.tensor([[1.2], [0.7], [1.3]])
    expected = TF.adjust_saturation(TF.adjust_contrast(TF.adjust_brightness(image.float() / 255, 1.2), 0.7), 1.3)
    out = color_jitter(image[None], factors)[0]
    assert out.dtype == torch.uint8
    assert (out.float() - expected * 255).abs().max() <= 1.0
    assert torch.equal(color_jitter(image[None], torch.ones(3, 1))[0], image)


def test_gaussian_blur_matches_torchvision_and_sigma_0_is_identity():
    images = torch.randint(0, 256, (2, 3, 64, 64), dtype=torch.uint8)
    out = gaussian_blur(images, torch.tensor([0.0, 2.0]))
    assert out.shape == images.shape and out.dtype == torch.uint8
    assert torch.equal(out[0], images[0])
    expected = TF.gaussian_blur(images[1].float(), kernel_size=19, sigma=2.0)
    assert (out[1].float() - expected).abs().max() <= 1.0
    assert out[1].float().std() < images[1].float().std() / 2


def test_jpeg_recompression_changes_only_the_chosen_images():
    images = torch.randint(0, 256, (3, 3, 64, 64), dtype=torch.uint8)
    out = jpeg_recompress(images, torch.tensor([0, 30, 95]))
    assert out.shape == images.shape and out.dtype == torch.uint8
    assert torch.equal(out[0], images[0])
    errors = [(out[i].float() - images[i].float()).abs().mean().item() for i in (1, 2)]
    assert errors[0] > errors[1] > 0  # lower quality, larger error


def test_photometric_ops_have_the_same_distribution_on_both_paths():
    """Bulk draws and the per-item transform of a flat grey image: same mean and spread of the
    output brightness under jitter, same share of images changed by blur/JPEG."""
    config = AugmentConfig(crop="none", flip=False, jitter=0.4, blur_prob=0.3, jpeg_prob=0.3)
    grey = torch.zeros(3, 32, 32, dtype=torch.uint8)
    grey[:, :, 16:] = 200
    draws = 400
    augmenter = Augmenter(config)
    bulk = augmenter(grey[None].repeat(draws, 1, 1, 1), augmenter.draw(draws, torch.Generator().manual_seed(0)))
    transform = item_transform((0.0,) * 3, (1 / 255,) * 3, True, config)
    pil_image = Image.fromarray(grey.permute(1, 2, 0).numpy())
    torch.manual_seed(0)
    per_item = torch.stack([transform(pil_image).round().to(torch.uint8) for _ in range(draws)])
    assert any(isinstance(step, ItemAugment) for step in transform.transforms)
    bulk_means, item_means = bulk.float().mean((1, 2, 3)), per_item.float().mean((1, 2, 3))
    assert abs(bulk_means.mean() - item_means.mean()) < 4 and abs(bulk_means.std() - item_means.std()) < 4
    edge = slice(13, 19)  # blur and JPEG soften the sharp edge in the middle
    bulk_soft = (bulk[:, 0, :, edge].float().diff(dim=-1).abs().amax((1, 2)) < 150).float().mean()
    item_soft = (per_item[:, 0, :, edge].float().diff(dim=-1).abs().amax((1, 2)) < 150).float().mean()
    assert abs(bulk_soft - item_soft) < 0.1


def test_random_erasing_fills_one_rectangle_with_one_colour_at_the_given_rate():
    images = torch.randint(0, 256, (300, 3, 64, 64), dtype=torch.uint8)
    augmenter = Augmenter(AugmentConfig(crop="none", flip=False, erase_prob=0.4))
    params = augmenter.draw(300, torch.Generator().manual_seed(0), size=64)
    out = augmenter(images, params)
    changed = (out != images).any(1)
    assert 0.3 < changed.any((1, 2)).float().mean() < 0.5
    for image, result, (top, left, height, width), colour in zip(images, out, params["erase"].T.tolist(),
                                                               params["erase_colours"].T):
        box = (slice(None), slice(top, top + height), slice(left, left + width))
        assert torch.equal(result[box], colour.view(3, 1, 1).expand_as(image[box]))
        outside = torch.ones(64, 64, dtype=torch.bool)
        outside[box[1:]] = False
        assert torch.equal(result[:, outside], image[:, outside])
        if height:
            assert ERASE_AREA[0] - 0.01 <= height * width / 64 ** 2 <= ERASE_AREA[1] + 0.02


def test_random_erasing_draws_the_same_boxes_on_both_paths_after_a_native_crop():
    """The per-item path sizes its boxes by the cropped image, as the bulk path does."""
    config = AugmentConfig(crop="native", crop_size=128, flip=False, erase_prob=1.0)
    grey = np.full((256, 256, 3), 128, dtype=np.uint8)
    augmenter = Augmenter(config)
    bulk = augmenter(torch.from_numpy(grey).permute(2, 0, 1)[None].repeat(200, 1, 1, 1),
                     augmenter.draw(200, torch.Generator().manual_seed(0)))
    transform = item_transform((0.0,) * 3, (1 / 255,) * 3, True, config)
    torch.manual_seed(0)
    per_item = torch.stack([transform(Image.fromarray(grey)).round().to(torch.uint8) for _ in range(200)])
    assert bulk.shape == per_item.shape == (200, 3, 128, 128)
    bulk_area, item_area = ((images != 128).any(1).float().mean((1, 2)) for images in (bulk, per_item))
    expected = sum(ERASE_AREA) / 2  # mean of the uniform area fraction
    assert abs(bulk_area.mean() - expected) < 0.03 and abs(item_area.mean() - expected) < 0.03


def test_mixup_blends_images_and_labels_with_a_beta_weight():
    images = torch.arange(8, dtype=torch.float32).view(8, 1, 1, 1).expand(8, 3, 4, 4)
    labels = torch.arange(8)
    mixed, partners, lam = mixup_batch(images, labels, 1.0, torch.Generator().manual_seed(0))
    assert 0 < lam < 1 and sorted(partners.tolist()) == list(range(8))
    assert torch.allclose(mixed, lam * images + (1 - lam) * images[partners])
    generator = torch.Generator().manual_seed(1)
    uniform = [mixup_batch(images, labels, 1.0, generator)[2] for _ in range(400)]
    peaked = [mixup_batch(images, labels, 0.2, generator)[2] for _ in range(400)]
    assert abs(np.mean(uniform) - 0.5) < 0.05 and abs(np.mean(peaked) - 0.5) < 0.06
    middle = [np.mean([0.1 < lam < 0.9 for lam in draws]) for draws in (uniform, peaked)]
    assert abs(middle[0] - 0.8) < 0.06 and middle[1] < 0.45  # Beta(0.2, 0.2) mostly stays near 0 or 1


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


@pytest.mark.parametrize("name", ["timm:resnet10t", "patch:resnet10t"])
def test_drop_path_makes_training_passes_stochastic_and_evaluation_exact(name):
    images = torch.randn(2, 3, 64, 64)
    model = build_model(name, drop_path_rate=0.5)
    drop_rates = [module.drop_prob for module in model.modules() if type(module).__name__ == "DropPath"]
    assert drop_rates and max(drop_rates) > 0
    for module in model.modules():  # timm starts residual branches at zero; dropping them must show
        if isinstance(module, torch.nn.BatchNorm2d):
            torch.nn.init.ones_(module.weight)
    model.train()
    assert not torch.allclose(model(images), model(images))
    model.eval()
    assert torch.equal(model(images), model(images))
    plain = build_model(name).train()
    assert torch.equal(plain(images), plain(images))


def test_drop_path_on_an_architecture_without_it_exits_2_with_the_fix(tiny_fakes, tmp_path, capsys):
    code = train_main.main(["-m", "timm:legacy_xception", "--drop-path", "0.1", "-d", str(tiny_fakes),
                            "--device", "cpu", "--out-dir", str(tmp_path / "out"),
                            "--checkpoint-dir", str(tmp_path / "ck"), "--cache-dir", str(tmp_path / "cache")])
    assert code == 2
    assert "--drop-path 0.1: timm's legacy_xception has no stochastic depth; drop the flag" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_timm_model_trains_saves_reloads_and_explains(tiny_fakes, tmp_path):
    pytest.importorskip("pytorch_grad_cam")
    code = train_main.main(["-m", "timm:resnet10t", "-d", str(tiny_fakes), "-b", "8", "-e", "1", "--device", "cpu",
                            "--mixup", "0.2", "--erase-prob", "0.5", "--drop-path", "0.1", "--crop", "resized",
                            "--out-dir", str(tmp_path / "out"), "--checkpoint-dir", str(tmp_path / "ck"),
                            "--cache-dir", str(tmp_path / "cache")])
    assert code == 0
    model, checkpoint = load_trained_model(tmp_path / "ck" / "tiny_fakes_timm-resnet10t_AdamW.pt")
    assert checkpoint["model_name"] == "timm:resnet10t"
    config = checkpoint["config"]
    assert (config["mixup"], config["erase_prob"], config["drop_path"], config["crop"]) == (0.2, 0.5, 0.1, "resized")
    assert grad_cam_analysis.target_layer_name(model) == "layer4"
    images = torch.randn(2, 3, 256, 256)
    maps = grad_cam_analysis.grad_cam_maps(images, model, [1, 0])
    assert maps.shape == (2, 256, 256) and np.isfinite(maps).all()


def test_timm_weights_load_from_a_local_file_and_bad_files_are_refused(tmp_path):
    import timm
    source = timm.create_model("resnet10t", pretrained=False)  # 1000-class head, as a download would have
    torch.save(source.state_dict(), tmp_path / "resnet10t.pth")
    model = build_model("timm:resnet10t", weights=tmp_path / "resnet10t.pth")
    assert torch.equal(model.state_dict()["conv1.0.weight"], source.state_dict()["conv1.0.weight"])
    assert model.fc.out_features == 2
    torch.save(SimpleNet().state_dict(), tmp_path / "simplenet.pth")
    with pytest.raises(CheckpointError, match="not a state dict of timm resnet10t"):
        build_model("timm:resnet10t", weights=tmp_path / "simplenet.pth")
    torch.save(torch.ones(3), tmp_path / "tensor.pth")
    torch.save({"epoch": 3, "fc.weight": 1}, tmp_path / "notes.pth")
    (tmp_path / "notes.txt").write_text("not weights")
    for bad, says in [("missing.pth", "weights file not found"), ("notes.txt", r"not a loadable weights file \(not a file written by torch.save\)"),
                      ("tensor.pth", r"not a state dict \(names to tensors\)"),
                      ("notes.pth", r"not a state dict \(names to tensors\)")]:
        with pytest.raises(CheckpointError, match=rf"{bad}: {says}.*timm.create_model\('resnet10t'\)"):
            build_model("timm:resnet10t", weights=tmp_path / bad)


def test_timm_weights_load_when_the_architecture_has_two_heads(tmp_path):
    import timm
    arch = "deit_tiny_distilled_patch16_224"  # classifier ("head", "head_dist")
    source = timm.create_model(arch, pretrained=False)
    torch.save(source.state_dict(), tmp_path / "deit.pth")
    model = build_model(f"timm:{arch}", weights=tmp_path / "deit.pth")
    assert torch.equal(model.state_dict()["cls_token"], source.state_dict()["cls_token"])
    assert model.head.out_features == model.head_dist.out_features == 2


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


def patch_logit_map(model, images):
    with torch.no_grad():
        return model.patch_logits(model.features(images)[-1])


def test_patch_detector_takes_any_size_and_its_patch_logits_are_local():
    torch.manual_seed(0)
    model = build_model("patch:resnet10t").eval()
    images = torch.randn(2, 3, 256, 256)
    with torch.no_grad():
        assert model(images).shape == (2, 2)
        assert model(torch.randn(3, 3, 192, 192)).shape == (3, 2)
    changed = images.clone()
    changed[:, :, :32, :32] = 5.0  # the top left corner
    before, after = patch_logit_map(model, images), patch_logit_map(model, changed)
    assert before.shape == (2, 2, 32, 32)
    assert not torch.equal(before[..., :4, :4], after[..., :4, :4])
    assert torch.equal(before[..., 16:, 16:], after[..., 16:, 16:])  # the bottom right quarter never sees it


def test_patch_detector_stride_16_has_a_coarser_patch_map_than_stride_8():
    images = torch.randn(1, 3, 256, 256)
    assert patch_logit_map(build_model("patch:resnet10t@8").eval(), images).shape == (1, 2, 32, 32)
    assert patch_logit_map(build_model("patch:resnet10t@16").eval(), images).shape == (1, 2, 16, 16)
    assert patch_logit_map(build_model("patch:resnet10t").eval(), images).shape == (1, 2, 32, 32)


def test_bad_patch_names_say_what_to_fix():
    stride_error = "the output stride after @ must be 2, 4, 8, 16 or 32 (e.g. patch:resnet10t@16)"
    assert model_name_error("patch:resnet10t@3") == stride_error
    assert model_name_error("patch:resnet10t@x") == stride_error
    assert model_name_error("patch:resnet10t@") == stride_error
    assert model_name_error("patch:no_such_net").startswith("not a timm architecture")
    assert model_name_error("patch:resnet10t") is None and model_name_error("patch:resnet10t@16") is None
    assert "patch:ARCH for its patch detector" in model_name_error("resnet10t")
    assert model_name("patch:resnet10t@16") == "patch:resnet10t@16"
    with pytest.raises(argparse.ArgumentTypeError, match=r"invalid choice: 'patch:resnet10t@3'; the output stride"):
        model_name("patch:resnet10t@3")


def test_patch_weights_load_from_a_full_timm_state_dict_and_bad_files_are_refused(tmp_path):
    import timm
    source = timm.create_model("resnet10t", pretrained=False)  # all stages and a 1000-class head, as downloaded
    torch.save(source.state_dict(), tmp_path / "resnet10t.pth")
    model = build_model("patch:resnet10t", weights=tmp_path / "resnet10t.pth")
    kept = model.features.state_dict()
    assert "layer2.0.conv1.weight" in kept and not any(key.startswith(("layer3.", "fc.")) for key in kept)
    for key, value in kept.items():
        assert torch.equal(value, source.state_dict()[key]), key
    assert model.patch_logits.out_channels == 2
    torch.save(SimpleNet().state_dict(), tmp_path / "simplenet.pth")
    with pytest.raises(CheckpointError, match="not a state dict of timm resnet10t"):
        build_model("patch:resnet10t", weights=tmp_path / "simplenet.pth")
    torch.save({**source.state_dict(), "layer5.weight": torch.zeros(1)}, tmp_path / "bigger.pth")
    with pytest.raises(CheckpointError, match=r"1 unexpected, e.g. \['layer5.weight'\]"):
        build_model("patch:resnet10t", weights=tmp_path / "bigger.pth")  # another architecture's extra layers
    torch.save(timm.create_model("resnet14t").state_dict(), tmp_path / "resnet14t.pth")
    for name in ("patch:resnet10t", "timm:resnet10t"):  # same layer names, other shapes
        with pytest.raises(CheckpointError, match=r"not a state dict of timm resnet10t \(size mismatch"):
            build_model(name, weights=tmp_path / "resnet14t.pth")


def test_patch_weights_load_where_the_cut_network_renames_its_layers(tmp_path):
    import timm
    source = timm.create_model("convnext_atto", pretrained=False)
    torch.save(source.state_dict(), tmp_path / "convnext_atto.pth")
    model = build_model("patch:convnext_atto", weights=tmp_path / "convnext_atto.pth")
    assert "stem_0.weight" in model.features.state_dict()  # stem.0 of the whole network
    assert torch.equal(model.features.state_dict()["stem_0.weight"], source.state_dict()["stem.0.weight"])
    assert torch.equal(model.features.state_dict()["stages_1.downsample.1.weight"],
                       source.state_dict()["stages.1.downsample.1.weight"])
    assert "state_dict" not in model.pretrained_cfg


def test_patch_model_trains_saves_reloads_and_explains(tiny_fakes, tmp_path):
    pytest.importorskip("pytorch_grad_cam")
    code = train_main.main(["-m", "patch:resnet10t", "-d", str(tiny_fakes), "-b", "8", "-e", "1", "--device", "cpu",
                            "--out-dir", str(tmp_path / "out"), "--checkpoint-dir", str(tmp_path / "ck"),
                            "--cache-dir", str(tmp_path / "cache")])
    assert code == 0
    assert (tmp_path / "out" / "tiny_fakes_patch-resnet10t_AdamW.json").is_file()
    assert (tmp_path / "ck" / "tiny_fakes_patch-resnet10t_AdamW_last.pt").is_file()
    model, checkpoint = load_trained_model(tmp_path / "ck" / "tiny_fakes_patch-resnet10t_AdamW.pt")
    assert checkpoint["model_name"] == "patch:resnet10t"
    assert type(model).__name__ == "PatchDetector" and not model.training
    assert grad_cam_analysis.target_layer_name(model) == "patch_logits"  # the map the mean pools
    images = torch.randn(2, 3, 256, 256)
    maps = grad_cam_analysis.grad_cam_maps(images, model, [1, 0])
    assert maps.shape == (2, 256, 256) and np.isfinite(maps).all()


def test_patch_stride_stays_in_the_run_file_names():
    assert model_file_name("patch:resnet10t@16") == "patch-resnet10t@16"
    json_path, best_path, _ = output_paths(LoggingParameters("patch:resnet10t@16", "tiny_fakes", "AdamW"))
    assert json_path.name == "tiny_fakes_patch-resnet10t@16_AdamW.json"
    assert best_path.name == "tiny_fakes_patch-resnet10t@16_AdamW.pt"


def minimal_history(epochs_run, planned, stopped_early=None):
    return {"config": {"epochs": planned, "dataset": "data/tiny_fakes", "recipe": "improved"},
            "dataset": "tiny_fakes", "model": "patch:resnet10t", "best_epoch": 1, "stopped_early": stopped_early,
            "train_loss": [0.5] * epochs_run, "val_acc": [0.75] * epochs_run, "test_acc": [0.7] * epochs_run,
            "test_balanced_acc": [0.7] * epochs_run, "test_auc": [0.8] * epochs_run,
            "epoch_seconds": [2.0] * epochs_run}


def test_results_table_refuses_a_file_that_is_not_a_run(tiny_run, tmp_path, capsys):
    (tmp_path / "bench.json").write_text('{"rows": []}')
    for path, message in ((tmp_path / "missing.json", "missing.json: not a run JSON written by train_main.py"),
                          (tmp_path / "bench.json", "bench.json: not a run JSON written by train_main.py (no 'best_epoch' key)")):
        assert results_table.main([str(tiny_run["json"]), str(path)]) == 2
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
