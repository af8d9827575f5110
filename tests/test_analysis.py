"""Analysis scripts: scores, metrics, saliency, Grad-CAM, explanation scores, figures, CLI errors."""
import importlib.util
import json
import shutil

import numpy as np
import pytest
import torch
from matplotlib.colors import to_hex
from PIL import Image
from sklearn import metrics as skm
from torch import nn

from fakedetect.analysis import curves, numbers, saliency_figures, samples
from fakedetect.cli import (grad_cam_analysis, numerical_analysis, plot_accuracy_and_loss,
                            plot_samples_of_faces_datasets, report, saliency_map)
from fakedetect.data import batches, normalization
from fakedetect.data.batches import item_transform
from fakedetect.data.folders import FacesDataset
from fakedetect.data.images import DatasetError, load_image
from fakedetect.explain import grad_cam, saliency
from fakedetect.explain.scores import explain_dataset, load_mask, score_map
from fakedetect.io.runs import operating_threshold
from fakedetect.metrics import equal_error_rate
from fakedetect.models.registry import load_trained_model
from fakedetect.models.simplenet import SimpleNet


def run_flags(tiny_run, figures_dir):
    return ["-m", "SimpleNet", "-d", str(tiny_run["dataset"]), "-o", "Adam", "--out-dir", str(tiny_run["out_dir"]),
            "--checkpoint-dir", str(tiny_run["checkpoint_dir"]), "--figures-dir", str(figures_dir), "--device", "cpu",
            "-b", "8"]


def assert_png(path, min_size=300):
    assert path.is_file() and path.stat().st_size > 0, path
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert min(image.size) >= min_size, (path, image.size)
        assert image.info["dpi"][0] == pytest.approx(150, abs=1)


@pytest.fixture(scope="module")
def trained(tiny_run):
    model, checkpoint = load_trained_model(tiny_run["best"], "cpu")
    return model, checkpoint, FacesDataset(tiny_run["dataset"] / "test")


def test_soft_scores_are_probabilities_fed_as_in_training(trained):
    model, checkpoint, dataset = trained
    real, fake, labels = numbers.get_soft_scores_and_true_labels(dataset, model, checkpoint["normalization"],
                                                                            batch_size=5)
    np.testing.assert_allclose(real + fake, 1.0, atol=1e-6)
    assert ((fake >= 0) & (fake <= 1)).all()
    assert labels.tolist() == dataset.labels
    transform = item_transform(*checkpoint["normalization"], train=False)
    with torch.no_grad():
        images = torch.stack([transform(load_image(path)) for path in dataset.files])
        expected = torch.softmax(model(images), 1)[:, 1].numpy()
    np.testing.assert_allclose(fake, expected, atol=1e-5)


def test_reported_metrics_equal_scikit_learn_and_curves_are_drawn(tiny_run, trained, tmp_path):
    model, checkpoint, dataset = trained
    assert numerical_analysis.main(run_flags(tiny_run, tmp_path)) == 0
    reported = json.loads((tmp_path / "tiny_fakes_SimpleNet_Adam_metrics.json").read_text())
    _, fake, labels = numbers.get_soft_scores_and_true_labels(dataset, model, checkpoint["normalization"])
    assert reported["auc"] == pytest.approx(skm.roc_auc_score(labels, fake))
    assert reported["average_precision"] == pytest.approx(skm.average_precision_score(labels, fake))
    assert (reported["eer"], reported["eer_threshold"]) == pytest.approx(equal_error_rate(labels, fake))
    threshold = checkpoint["threshold"]
    assert reported["threshold"] == pytest.approx(threshold) and 0 < threshold < 1
    called_fake = fake >= threshold
    assert reported["accuracy"] == pytest.approx((called_fake == labels).mean())
    assert reported["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(labels, called_fake))
    assert reported["confusion_matrix"] == skm.confusion_matrix(labels, called_fake).tolist()
    assert reported["accuracy_at_0.5"] == pytest.approx(((fake >= 0.5) == labels).mean())
    for name in ("roc_curve", "det_curve"):
        assert_png(tmp_path / f"tiny_fakes_SimpleNet_Adam_{name}.png")


def test_split_metrics_decide_at_the_checkpoint_threshold():
    labels, scores = [0, 0, 1, 1], [0.1, 0.2, 0.3, 0.9]
    at_checkpoint = numbers.split_metrics(labels, scores, {"threshold": 0.25})
    assert at_checkpoint["threshold"] == 0.25 and "validation" in at_checkpoint["threshold_source"]
    assert at_checkpoint["accuracy"] == 1.0 and at_checkpoint["confusion_matrix"] == [[2, 0], [0, 2]]
    assert at_checkpoint["accuracy_at_0.5"] == 0.75 and at_checkpoint["balanced_accuracy_at_0.5"] == 0.75
    unknown = numbers.split_metrics(labels, scores, {})
    assert unknown["threshold"] == 0.5 and unknown["accuracy"] == 0.75
    assert "no validation threshold" in numbers.format_metrics(unknown)


def test_one_class_split_gets_a_message_not_a_crash(tiny_run, tmp_path, capsys):
    only_fakes = tmp_path / "only_fakes" / "test" / "fake"
    only_fakes.mkdir(parents=True)
    for path in sorted((tiny_run["dataset"] / "test" / "fake").glob("*.png"))[:3]:
        shutil.copy(path, only_fakes)
    figures = tmp_path / "figures"
    flags = run_flags(tiny_run, figures) + ["--eval-dataset", str(tmp_path / "only_fakes")]
    assert numerical_analysis.main(flags) == 0
    assert "holds fake images only" in capsys.readouterr().out
    reported = json.loads((figures / "tiny_fakes_SimpleNet_Adam_on_only_fakes_metrics.json").read_text())
    assert reported["auc"] is None and reported["fake_count"] == 3
    assert not list(figures.glob("*.png"))
    assert report.main(flags) == 0, "a test-only dataset without train/ must be reportable"
    summary = json.loads((figures / "tiny_fakes_SimpleNet_Adam_on_only_fakes_summary.json").read_text())
    assert "tiny_fakes_SimpleNet_Adam_on_only_fakes_datasets_samples.png" in summary["figures"] and "tiny_fakes_SimpleNet_Adam_on_only_fakes_roc_curve.png" not in summary["figures"]


def test_figure_names_carry_the_split_and_no_colon(tiny_run, tmp_path):
    assert numerical_analysis.main(run_flags(tiny_run, tmp_path) + ["--split", "val"]) == 0
    assert (tmp_path / "tiny_fakes_SimpleNet_Adam_val_metrics.json").is_file()
    assert not (tmp_path / "tiny_fakes_SimpleNet_Adam_metrics.json").exists()
    history = json.loads(next(tiny_run["out_dir"].glob("tiny_fakes_SimpleNet_*.json")).read_text())
    del history["run_name"]  # a version-1 JSON: the name is made from the model, dataset and optimizer
    paths = curves.plot_accuracy_and_loss({**history, "model": "timm:resnet18"}, tmp_path)
    assert [path.name for path in paths] == ["tiny_fakes_timm-resnet18_Adam_losses_plot.png",
                                             "tiny_fakes_timm-resnet18_Adam_accuracies_plot.png",
                                             "tiny_fakes_timm-resnet18_Adam_auc_plot.png"]


def test_bad_run_json_and_missing_grad_cam_are_one_line_errors(tiny_run, tmp_path, capsys, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    (out / tiny_run["json"].name).write_text('{"rows": ')
    flags = ["-m", "SimpleNet", "-d", "tiny_fakes", "-o", "Adam", "--out-dir", str(out), "--figures-dir", str(tmp_path)]
    assert plot_accuracy_and_loss.main(flags) == 1
    assert f"{tiny_run['json'].name}: not a readable run JSON" in capsys.readouterr().err
    (out / tiny_run["json"].name).write_text('{"rows": []}')
    assert plot_accuracy_and_loss.main(flags) == 1
    assert "not a run JSON written by train_main.py; train the run again" in capsys.readouterr().err
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name: None if name == "pytorch_grad_cam" else real_find_spec(name))
    assert grad_cam_analysis.main(run_flags(tiny_run, tmp_path)) == 1
    assert "needs the grad-cam package: pip install" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        numerical_analysis.main(run_flags(tiny_run, tmp_path) + ["--device", "gpu"])
    assert "--device gpu: not a device" in capsys.readouterr().err


def test_saliency_pairs_mark_errors_at_the_checkpoint_threshold(monkeypatch):
    monkeypatch.setattr(saliency_figures, "save", lambda fig, path: fig)
    images, maps = np.zeros((2, 8, 8, 3), np.uint8), np.ones((2, 8, 8))
    for threshold, colours in ((0.5, ["crimson", "black"]), (0.3, ["black", "black"])):
        fig = saliency_figures.plot_pairs(images, maps, np.array([1, 0]), np.array([0.4, 0.2]), "t", "unused.png",
                                      threshold=threshold)
        titles = [ax.title for ax in fig.axes if ax.get_title().startswith(("real", "fake"))]
        assert [title.get_text() for title in titles] == ["fake, P(fake) 0.400", "real, P(fake) 0.200"]
        assert [to_hex(title.get_color()) for title in titles] == [to_hex(colour) for colour in colours]
        assert f"misclassified at threshold {threshold:.3f}" in fig._suptitle.get_text()
    assert operating_threshold({"threshold": 0.25}) == 0.25 and operating_threshold({"threshold": None}) == 0.5


def test_saliency_equals_captum():
    from captum.attr import Saliency

    torch.manual_seed(0)
    model = SimpleNet().eval()
    images, labels = torch.randn(3, 3, 256, 256), torch.tensor([0, 1, 1])
    maps = saliency.compute_gradient_saliency_maps(images, labels, model)
    expected = Saliency(model).attribute(images.clone().requires_grad_(), target=labels, abs=True).amax(dim=1)
    assert maps.shape == (3, 256, 256)
    assert (maps - expected).abs().max().item() <= 1e-6
    assert all(p.grad is None for p in model.parameters())


class BrightnessNet(nn.Module):
    """Fake logit = mean brightness: the evidence for "fake" is wherever the image is bright."""

    def __init__(self):
        super().__init__()
        self.features = nn.Conv2d(3, 1, 1, bias=False)
        nn.init.constant_(self.features.weight, 1 / 3)
        self.head = nn.Linear(1, 2)
        with torch.no_grad():
            self.head.weight.copy_(torch.tensor([[-1.0], [1.0]]))
            self.head.bias.zero_()

    def forward(self, images):
        return self.head(torch.relu(self.features(images)).mean(dim=(2, 3)))


@pytest.mark.parametrize("rows, columns", [(slice(40, 56), slice(8, 24)), (slice(4, 20), slice(36, 60))])
def test_grad_cam_peaks_where_the_evidence_is(rows, columns):
    images = torch.zeros(1, 3, 64, 64)
    images[:, :, rows, columns] = 1.0
    model = BrightnessNet().eval()
    cam = grad_cam.grad_cam_maps(images, model, torch.tensor([1]), layer=model.features)[0]
    assert cam.shape == (64, 64)
    peak_row, peak_column = np.unravel_index(np.argmax(cam), cam.shape)
    assert rows.start <= peak_row < rows.stop and columns.start <= peak_column < columns.stop
    inside = np.zeros_like(cam, dtype=bool)
    inside[rows, columns] = True
    assert cam[inside].sum() / cam.sum() > 0.9


def test_grad_cam_layer_and_explained_class():
    assert grad_cam.target_layer_name(SimpleNet()) == "conv3"
    labels, logits = torch.tensor([0, 1, 1]), torch.tensor([[2.0, 1.0], [3.0, 0.0], [0.0, 1.0]])
    assert grad_cam.classes_to_explain("predicted", labels, logits).tolist() == [0, 0, 1]
    assert grad_cam.classes_to_explain("true", labels, logits).tolist() == [0, 1, 1]
    assert grad_cam.classes_to_explain("fake", labels, logits).tolist() == [1, 1, 1]
    assert grad_cam.classes_to_explain("real", labels, logits).tolist() == [0, 0, 0]


def test_grad_cam_visualization_and_original_colours(trained):
    model, checkpoint, dataset = trained
    index = len(dataset) - 1
    shown, label = grad_cam.get_grad_cam_visualization(dataset, model, checkpoint["normalization"], index, "fake")
    assert shown.shape == (256, 256, 3) and shown.dtype == np.uint8 and label == dataset.labels[index] == 1
    images, _ = next(batches.normalized_batches(dataset, checkpoint["normalization"], "cpu", 1, [index]))
    original = np.asarray(load_image(dataset.files[index]))
    np.testing.assert_array_equal(normalization.denormalize(images, checkpoint["normalization"])[0], original)


def test_score_map_energy_pointing_and_constant_maps():
    mask = np.zeros((8, 8), dtype=bool)
    mask[:2] = True
    inside, outside = np.where(mask, 1.0, 0.0), np.where(mask, 0.0, 1.0)
    assert score_map(inside, mask) == (1.0, 1.0)
    assert score_map(outside, mask) == (0.0, 0.0)
    assert score_map(np.ones((8, 8)), mask) == (0.25, 0.25)
    assert score_map(np.zeros((8, 8)), mask) == (0.25, 0.25)
    half = inside + 0.5 * outside
    assert score_map(half, mask) == pytest.approx((16 / (16 + 24), 1.0))


def test_explain_dataset_reads_every_fake_mask(tiny_fakes):
    dataset = FacesDataset(tiny_fakes / "test")
    result = explain_dataset(dataset, lambda images, labels: np.ones((len(labels), 256, 256)),
                             ((0.5,) * 3, (0.5,) * 3), "cpu", batch_size=5)
    assert result["counts"] == {0: 6, 1: 6}
    assert len(result["scores"]["map"]) == 6
    assert result["scores"]["map"] == result["scores"]["uniform baseline"]
    areas = [np.mean(np.asarray(Image.open(tiny_fakes / "test" / "masks" / p.name)) > 127) for p in dataset.fake_image_files]
    np.testing.assert_allclose([energy for energy, _ in result["scores"]["map"]], areas)
    np.testing.assert_allclose(result["mean_maps"][1], 1.0)


def test_balanced_sample_is_deterministic_and_fills_a_short_class():
    labels = [0] * 10 + [1] * 3
    first = batches.balanced_sample(labels, 8, seed=1)
    assert first == batches.balanced_sample(labels, 8, seed=1)
    assert len(first) == 8 and sum(labels[i] for i in first) == 3
    assert batches.balanced_sample(labels, 6, seed=2) != batches.balanced_sample(labels, 6, seed=3)


def test_sample_pairs_take_labels_from_the_folders(tiny_fakes):
    dataset = FacesDataset(tiny_fakes / "train")
    pairs = samples.sample_pairs(dataset, 3, seed=0)
    assert pairs == samples.sample_pairs(dataset, 3, seed=0)
    assert len(pairs) == 3
    assert all(real.parent.name == "real" and fake.parent.name == "fake" for real, fake in pairs)


def test_plot_scripts_write_pngs(tiny_run, tmp_path):
    assert plot_accuracy_and_loss.main(["-m", "SimpleNet", "-d", "tiny_fakes", "-o", "Adam", "--out-dir",
                                        str(tiny_run["out_dir"]), "--figures-dir", str(tmp_path)]) == 0
    assert plot_samples_of_faces_datasets.main(["-d", str(tiny_run["dataset"]), "--pairs", "2",
                                                "--figures-dir", str(tmp_path)]) == 0
    for name in ("tiny_fakes_SimpleNet_Adam_losses_plot", "tiny_fakes_SimpleNet_Adam_accuracies_plot",
                 "tiny_fakes_SimpleNet_Adam_auc_plot", "datasets_samples"):
        assert_png(tmp_path / f"{name}.png")


@pytest.mark.slow
def test_explanation_scripts_write_pngs_deterministically(tiny_run, tmp_path):
    for attempt in ("first", "second"):
        assert saliency_map.main(run_flags(tiny_run, tmp_path / attempt)) == 0
    assert grad_cam_analysis.main(run_flags(tiny_run, tmp_path) + ["--explain", "true"]) == 0
    for name in ("saliency_maps_and_images_pairs", "mean_saliency_maps"):
        first, second = (tmp_path / attempt / f"tiny_fakes_SimpleNet_Adam_{name}.png" for attempt in ("first", "second"))
        assert_png(first)
        assert first.read_bytes() == second.read_bytes(), name
    for name in ("Real_Image_grad_cam", "Fake_Image_grad_cam", "grad_cam_grid", "mean_grad_cam"):
        assert_png(tmp_path / f"tiny_fakes_SimpleNet_Adam_{name}.png")


@pytest.mark.slow
def test_report_draws_every_figure_and_a_summary(tiny_run, tmp_path, capsys):
    assert report.main(run_flags(tiny_run, tmp_path)) == 0
    summary = json.loads((tmp_path / "tiny_fakes_SimpleNet_Adam_summary.json").read_text())
    expected = {"tiny_fakes_SimpleNet_Adam_datasets_samples.png"} | {f"tiny_fakes_SimpleNet_Adam_{name}.png" for name in (
        "losses_plot", "accuracies_plot", "auc_plot", "roc_curve", "det_curve", "saliency_maps_and_images_pairs",
        "mean_saliency_maps", "Real_Image_grad_cam", "Fake_Image_grad_cam", "grad_cam_grid", "mean_grad_cam")}
    assert set(summary["figures"]) == expected
    for name in expected:
        assert_png(tmp_path / name)
    assert summary["metrics"]["count"] == 12 and summary["epochs"] == 2
    table = summary["explanation_scores"]
    assert list(table) == ["saliency", "Grad-CAM", "centre baseline", "uniform baseline"]
    assert all(row["images"] == 6 for row in table.values())
    assert table == json.loads((tmp_path / "tiny_fakes_SimpleNet_Adam_explanation_scores.json").read_text())
    assert "pointing game" in capsys.readouterr().out


def test_missing_run_files_give_one_line_naming_the_file_and_the_fix(tiny_run, tmp_path, capsys):
    flags = run_flags(tiny_run, tmp_path)
    flags[flags.index("Adam")] = "SGD"
    assert report.main(flags) == 1
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and "Traceback" not in error
    assert "tiny_fakes_SimpleNet_SGD.json" in error and "python train_main.py -m SimpleNet" in error and "-o SGD" in error
    shutil.copytree(tiny_run["out_dir"], tmp_path / "out")
    flags = run_flags(tiny_run, tmp_path) + ["--out-dir", str(tmp_path / "out"), "--checkpoint-dir", str(tmp_path / "none")]
    assert saliency_map.main(flags) == 1
    error = capsys.readouterr().err.strip()
    assert "tiny_fakes_SimpleNet_Adam.pt: not found" in error and "train_main.py" in error


@pytest.mark.parametrize("script", [report, numerical_analysis, saliency_map, grad_cam_analysis,
                                    plot_accuracy_and_loss, plot_samples_of_faces_datasets])
def test_every_script_has_help(script, capsys):
    with pytest.raises(SystemExit) as exit_info:
        script.main(["--help"])
    assert exit_info.value.code == 0
    assert "--figures-dir" in capsys.readouterr().out


def test_16_bit_and_float_masks_are_scaled_by_their_mode(tmp_path):
    half = np.zeros((4, 4), dtype=np.float32)
    half[:, 2:] = 1.0  # right half manipulated
    Image.fromarray(half).save(tmp_path / "float.tif")
    Image.fromarray((half * 65535).astype(np.uint16)).save(tmp_path / "deep.png")
    Image.fromarray((half * 255).astype(np.uint16)).save(tmp_path / "dark.png")  # 255 of 65535: nothing manipulated
    for name in ("float.tif", "deep.png"):
        assert np.array_equal(load_mask(tmp_path / name, (4, 4)), half > 0), name
    assert not load_mask(tmp_path / "dark.png", (4, 4)).any()
    Image.fromarray(half * 255).save(tmp_path / "over.tif")
    with pytest.raises(DatasetError, match=r"over.tif: cannot map the mask's F pixels to 8 bits \(float pixels from 0 to 255"):
        load_mask(tmp_path / "over.tif", (4, 4))


def test_a_full_disk_under_the_figures_is_one_line_naming_the_figure(tiny_run, small_filesystems, capsys):
    figures = small_filesystems.mount("figures", size_kib=64)
    small_filesystems.fill(figures)
    assert plot_accuracy_and_loss.main(["-m", "SimpleNet", "-d", "tiny_fakes", "-o", "Adam", "--out-dir",
                                        str(tiny_run["out_dir"]), "--figures-dir", str(figures)]) == 1
    error = capsys.readouterr().err
    assert error.startswith(f"error: {figures}/tiny_fakes_SimpleNet_Adam") and error.count("\n") == 1, error
    assert error.endswith(f".png: disk full writing it (0 bytes free on {figures}); free some space and run the command again\n")
    assert sorted(p.name for p in figures.iterdir()) == ["filler"]


def test_missing_eval_dataset_is_one_line_listing_the_datasets_there(tiny_run, tmp_path, capsys):
    flags = run_flags(tiny_run, tmp_path / "figures") + ["--eval-dataset", "nope",
                                                        "--data-root", str(tiny_run["dataset"].parent)]
    assert numerical_analysis.main(flags) == 1
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert "nope: not found as a path or under --data-root" in error and "demo_data.py" in error
    assert f"(datasets under {tiny_run['dataset'].parent}: {tiny_run['dataset'].name}" in error
