"""predict.py: probabilities, input expansion, failures, threshold, output files, face crops, Grad-CAM,
ensembles and flip TTA."""
import csv
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

from fakedetect.analysis import numbers
from fakedetect.cli import predict
from fakedetect.data.batches import item_transform
from fakedetect.data.folders import FacesDataset
from fakedetect.io.files import load_checkpoint, save_checkpoint
from fakedetect.models.registry import load_trained_model
from fakedetect.serve import predict as serve_predict


@pytest.fixture(scope="module")
def trained(tiny_run):
    model, checkpoint = load_trained_model(tiny_run["best"])
    return model, checkpoint


@pytest.fixture()
def images(tiny_run, tmp_path):
    """A folder of 4 test images (2 real, 2 fake) with a nested sub-folder and a non-image file."""
    folder = tmp_path / "images"
    (folder / "nested").mkdir(parents=True)
    test = tiny_run["dataset"] / "test"
    shutil.copy(sorted((test / "real").iterdir())[0], folder / "a_real.png")
    shutil.copy(sorted((test / "fake").iterdir())[0], folder / "b_fake.png")
    shutil.copy(sorted((test / "real").iterdir())[1], folder / "nested" / "c_real.png")
    shutil.copy(sorted((test / "fake").iterdir())[1], folder / "nested" / "d_fake.png")
    (folder / "notes.txt").write_text("not an image")
    return folder


def run_cli(capsys, *argv):
    code = predict.main([str(arg) for arg in argv] + ["--device", "cpu", "--no-progress"])
    return code, capsys.readouterr()


def test_probabilities_match_per_item_path(trained, tiny_run):
    """Batched uint8 scoring equals the course's per-item PIL path (ToTensor + Normalize) on the same images."""
    model, checkpoint = trained
    mean, std = checkpoint["normalization"]
    dataset = FacesDataset(tiny_run["dataset"] / "test", transform=item_transform(mean, std, train=False))
    with torch.no_grad():
        batch = torch.stack([dataset[i][0] for i in range(len(dataset))])
        expected = torch.softmax(model(batch), 1)[:, 1].numpy()
    results = serve_predict.predict([(model, checkpoint["normalization"])], dataset.files, 0.5, batch_size=5, progress=False)
    assert [row["file"] for row in results] == [str(path) for path in dataset.files]
    np.testing.assert_allclose([row["fake_probability"] for row in results], expected, atol=1e-5)


def test_probabilities_match_numerical_analysis(trained, tiny_run):
    model, checkpoint = trained
    dataset = FacesDataset(tiny_run["dataset"] / "test")
    real_scores, fake_scores, labels = numbers.get_soft_scores_and_true_labels(
        dataset, model, checkpoint["normalization"])
    results = serve_predict.predict([(model, checkpoint["normalization"])], dataset.files, 0.5, progress=False)
    np.testing.assert_allclose([row["fake_probability"] for row in results], fake_scores, atol=1e-6)
    assert labels.tolist() == dataset.labels


def test_folders_and_globs_expand_as_documented(images, tmp_path):
    names = lambda files: [path.relative_to(images).as_posix() for path in files]  # noqa: E731
    files, failures = serve_predict.expand_inputs([str(images)])
    assert names(files) == ["a_real.png", "b_fake.png", "nested/c_real.png", "nested/d_fake.png"]
    assert failures == []
    files, _ = serve_predict.expand_inputs([str(images / "*.png")])
    assert names(files) == ["a_real.png", "b_fake.png"]
    files, _ = serve_predict.expand_inputs([str(images / "**" / "*_fake.png")])
    assert names(files) == ["b_fake.png", "nested/d_fake.png"]
    files, _ = serve_predict.expand_inputs([str(images / "nested" / "d_fake.png"), str(images / "nested"), str(images / "n*")])
    assert names(files) == ["nested/d_fake.png", "nested/c_real.png"]
    files, failures = serve_predict.expand_inputs([str(tmp_path / "missing.png"), str(images / "*.jpg"), str(images / "notes.txt")])
    assert names(files) == ["notes.txt"]
    assert [item for item, _ in failures] == [str(tmp_path / "missing.png"), str(images / "*.jpg")]
    assert "not found" in failures[0][1] and "no images found" in failures[1][1]


def test_a_dataset_split_gives_its_real_and_fake_images_not_its_masks(tiny_fakes):
    split = tiny_fakes / "test"
    assert (split / "masks").is_dir()
    files, failures = serve_predict.expand_inputs([str(split)])
    assert failures == []
    assert files == FacesDataset(split).files  # real/ then fake/, as training reads the split
    files, _ = serve_predict.expand_inputs([str(tiny_fakes / "te*")])
    assert files == FacesDataset(split).files


def test_corrupt_file_is_reported_and_the_rest_scored(tiny_run, images, tmp_path, capsys):
    (images / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    code, output = run_cli(capsys, tiny_run["best"], images, tmp_path / "missing.png", "--json", tmp_path / "out.json")
    assert code == 1
    results = {row["file"]: row for row in json.loads((tmp_path / "out.json").read_text())["results"]}
    assert len(results) == 6
    assert results[str(images / "broken.jpg")]["fake_probability"] is None
    assert "cannot read image" in results[str(images / "broken.jpg")]["error"]
    assert "not found" in results[str(tmp_path / "missing.png")]["error"]
    assert sum(row["fake_probability"] is not None for row in results.values()) == 4
    assert "FAILED" in output.out and "broken.jpg" in output.out
    assert "4 scored" in output.out and "2 failed" in output.out


def test_threshold_changes_decisions(tiny_run, images, tmp_path, capsys):
    code, output = run_cli(capsys, tiny_run["best"], images, "--json", tmp_path / "default.json")
    assert code == 0
    default = json.loads((tmp_path / "default.json").read_text())
    _, checkpoint = load_trained_model(tiny_run["best"])
    assert default["threshold"] == pytest.approx(checkpoint["threshold"])
    assert "validation EER" in default["threshold_source"] and "validation EER" in output.out
    probabilities = sorted(row["fake_probability"] for row in default["results"])
    middle = (probabilities[1] + probabilities[2]) / 2
    for threshold, fakes in ((0.0, 4), (middle, 2), (1.0, 0)):
        run_cli(capsys, tiny_run["best"], images, "--threshold", threshold, "--json", tmp_path / "t.json")
        results = json.loads((tmp_path / "t.json").read_text())["results"]
        assert [row["decision"] for row in results].count("fake") == fakes
        assert all((row["decision"] == "fake") == (row["fake_probability"] >= threshold) for row in results)


def test_csv_matches_json(tiny_run, images, tmp_path, capsys):
    run_cli(capsys, tiny_run["best"], images, "--csv", tmp_path / "out.csv", "--json", tmp_path / "out.json")
    with open(tmp_path / "out.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    results = json.loads((tmp_path / "out.json").read_text())["results"]
    assert list(rows[0]) == list(serve_predict.CSV_FIELDS)
    assert [row["file"] for row in rows] == [row["file"] for row in results]
    assert [float(row["fake_probability"]) for row in rows] == pytest.approx([row["fake_probability"] for row in results])
    assert [row["decision"] for row in rows] == [row["decision"] for row in results]


def log_odds(probabilities):
    probabilities = np.array(probabilities)
    return np.log(probabilities / (1 - probabilities))


def scored(capsys, tmp_path, *argv):
    """The JSON predict.py writes for ``argv``, with its printed summary line as ``summary``."""
    code, output = run_cli(capsys, *argv, "--json", tmp_path / "scored.json")
    assert code == 0
    return {**json.loads((tmp_path / "scored.json").read_text()), "summary": output.out.splitlines()[-1]}


@pytest.fixture()
def second_checkpoint(tiny_run, tmp_path):
    """Another detector: tiny_run's best with perturbed weights, other normalization and threshold."""
    checkpoint = load_checkpoint(tiny_run["best"])
    generator = torch.Generator().manual_seed(1)
    checkpoint["model"] = {name: weights + 0.05 * weights.std() * torch.randn(weights.shape, generator=generator)
                           for name, weights in checkpoint["model"].items()}
    checkpoint.update(normalization=[[0.4, 0.4, 0.4], [0.3, 0.3, 0.3]], threshold=0.8)
    save_checkpoint(tmp_path / "second.pt", checkpoint)
    return tmp_path / "second.pt"


def test_ensemble_scores_the_mean_log_odds_of_its_checkpoints(tiny_run, second_checkpoint, images, tmp_path, capsys):
    first = scored(capsys, tmp_path, tiny_run["best"], images)
    second = scored(capsys, tmp_path, second_checkpoint, images)
    ensemble = scored(capsys, tmp_path, tiny_run["best"], images, "--ensemble", second_checkpoint)
    probabilities = {name: [row["fake_probability"] for row in run["results"]]
                     for name, run in (("first", first), ("second", second), ("ensemble", ensemble))}
    assert not np.allclose(probabilities["first"], probabilities["second"], atol=1e-3)
    np.testing.assert_allclose(log_odds(probabilities["ensemble"]),
                               (log_odds(probabilities["first"]) + log_odds(probabilities["second"])) / 2, atol=1e-4)
    assert ensemble["threshold"] == pytest.approx(1 / (1 + np.exp(-np.mean(log_odds([first["threshold"], 0.8])))))
    assert "mean of the checkpoints' validation EER thresholds" in ensemble["threshold_source"]
    assert ensemble["ensemble"] == [{"checkpoint": str(second_checkpoint), "model": "SimpleNet",
                                     "trained_on": first["trained_on"]}]
    assert "by one checkpoint at" in first["summary"] and "by an ensemble of 2 checkpoints at" in ensemble["summary"]


def test_tta_averages_the_log_odds_of_each_image_and_its_mirror(tiny_run, images, tmp_path, capsys):
    mirrored = tmp_path / "mirrored"
    mirrored.mkdir()
    for path in serve_predict.expand_inputs([str(images)])[0]:
        ImageOps.mirror(Image.open(path).convert("RGB")).save(mirrored / path.name)
    plain = scored(capsys, tmp_path, tiny_run["best"], images)["results"]
    mirror = {Path(row["file"]).name: row for row in scored(capsys, tmp_path, tiny_run["best"], mirrored)["results"]}
    tta = scored(capsys, tmp_path, tiny_run["best"], images, "--tta")
    assert tta["tta"] is True and "by one checkpoint with flip TTA at" in tta["summary"]
    expected = [(log_odds(row["fake_probability"]) + log_odds(mirror[Path(row["file"]).name]["fake_probability"])) / 2
                for row in plain]
    np.testing.assert_allclose(log_odds([row["fake_probability"] for row in tta["results"]]), expected, atol=1e-4)
    assert not np.allclose(expected, log_odds([row["fake_probability"] for row in plain]), atol=1e-3)


def test_crop_faces_scores_the_face_or_says_no_face(tiny_run, tmp_path, capsys):
    skimage_data = pytest.importorskip("skimage.data")
    canvas = Image.new("RGB", (640, 480), (90, 120, 150))
    canvas.paste(Image.fromarray(skimage_data.astronaut()).resize((256, 256)), (300, 150))
    canvas.save(tmp_path / "astronaut.png")
    Image.new("RGB", (300, 200), (128, 128, 128)).save(tmp_path / "blank.png")
    code, output = run_cli(capsys, tiny_run["best"], tmp_path / "astronaut.png", tmp_path / "blank.png",
                           "--crop-faces", "--json", tmp_path / "out.json")
    assert code == 1
    face, blank = json.loads((tmp_path / "out.json").read_text())["results"]
    x, y, w, h = face["face_box"]
    assert abs(x + w / 2 - (300 + 112)) < 10 and abs(y + h / 2 - (150 + 57)) < 10
    assert face["fake_probability"] is not None
    assert blank["error"] == "no face found" and blank["fake_probability"] is None
    assert "no face found" in output.out


def test_cam_writes_one_overlay_per_scored_image(tiny_run, images, tmp_path, capsys):
    pytest.importorskip("pytorch_grad_cam")
    (images / "broken.png").write_bytes(b"garbage")
    code, _ = run_cli(capsys, tiny_run["best"], images, "--cam", tmp_path / "cams", "--json", tmp_path / "out.json")
    assert code == 1
    results = json.loads((tmp_path / "out.json").read_text())["results"]
    written = sorted(path.name for path in (tmp_path / "cams").iterdir())
    assert written == sorted(f"{i:04d}_{row['file'].rsplit('/', 1)[1][:-4]}.png"
                             for i, row in enumerate(results) if row["error"] is None)
    assert len(written) == 4
    overlay = Image.open(tmp_path / "cams" / written[0])
    assert overlay.size == (256, 256) and overlay.mode == "RGB"


def test_ensemble_cam_is_the_mean_of_its_members_maps(tiny_run, second_checkpoint, images, tmp_path):
    pytest.importorskip("pytorch_grad_cam")
    from fakedetect.explain import grad_cam
    members = [(model, checkpoint["normalization"]) for model, checkpoint in
               (load_trained_model(tiny_run["best"]), load_trained_model(second_checkpoint))]
    batch = torch.from_numpy(np.stack([serve_predict.read_input(path)[0] for path in serve_predict.expand_inputs([str(images)])[0]]))
    ramp = np.tile(np.linspace(0, 1, 256, dtype=np.float32), (len(batch), 256, 1))
    member_maps = {id(members[0][0]): ramp, id(members[1][0]): ramp.transpose(0, 2, 1)}
    writer = serve_predict.CamWriter(members, "cpu", tmp_path / "cams")
    writer.maps = lambda normalized, model, classes: member_maps[id(model)]
    paths = writer(batch, [f"{index}.png" for index in range(len(batch))])
    for image, path in zip(batch, paths):
        expected = grad_cam.overlay(image.permute(1, 2, 0).numpy(), (ramp[0] + ramp[0].T) / 2)
        np.testing.assert_array_equal(np.asarray(Image.open(path)), expected)


def test_cam_without_grad_cam_says_what_to_install(tiny_run, images, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "pytorch_grad_cam", None)
    with pytest.raises(SystemExit) as exit_info:
        run_cli(capsys, tiny_run["best"], images, "--cam", tmp_path / "cams")
    assert "pip install 'grad-cam" in str(exit_info.value.code)
    assert not (tmp_path / "cams").exists()


def test_bad_checkpoint_is_one_line_error(images, tmp_path, capsys):
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    code, output = run_cli(capsys, tmp_path / "bad.pt", images)
    assert code == 1
    assert output.err.strip().startswith("error:") and "bad.pt" in output.err and len(output.err.strip().splitlines()) == 1


def test_bad_ensemble_member_is_one_line_error(tiny_run, images, tmp_path, capsys):
    (tmp_path / "member.pt").write_bytes(b"not a checkpoint")
    code, output = run_cli(capsys, tiny_run["best"], images, "--ensemble", tmp_path / "member.pt", "--csv", tmp_path / "out.csv")
    assert code == 1 and not (tmp_path / "out.csv").exists()
    assert output.err.strip().startswith("error:") and "member.pt" in output.err and len(output.err.strip().splitlines()) == 1


def test_a_full_disk_under_the_csv_is_one_line_and_keeps_the_earlier_csv(tiny_run, images, small_filesystems, capsys):
    folder = small_filesystems.mount("out", size_kib=64)
    (folder / "out.csv").write_text("an earlier CSV\n")
    small_filesystems.fill(folder)
    code, output = run_cli(capsys, tiny_run["best"], images, "--csv", folder / "out.csv")
    assert code == 1
    assert output.err == (f"error: {folder / 'out.csv'}: disk full writing it (0 bytes free on {folder}); "
                          "free some space and run the command again\n")
    assert (folder / "out.csv").read_text() == "an earlier CSV\n"
    assert sorted(p.name for p in folder.iterdir()) == ["filler", "out.csv"]


def test_every_script_refuses_an_odd_checkpoint_with_the_same_line(tiny_run, images, tmp_path, capsys):
    from fakedetect.cli import numerical_analysis, report
    checkpoint = torch.load(tiny_run["best"], weights_only=True)
    checkpoint["threshold"] = float("nan")  # once called every image real, exit code 0
    broken = tmp_path / "ck" / tiny_run["best"].name
    broken.parent.mkdir()
    torch.save(checkpoint, broken)
    expected = (f"error: {broken}: its 'threshold' is nan, not a number in [0, 1] (or null); pass a .pt file "
                "written by train_main.py (train a model first)")
    code, output = run_cli(capsys, broken, images)
    assert code == 1 and output.err.strip().splitlines() == [expected] and not output.out
    run_flags = ["-d", str(tiny_run["dataset"]), "-o", "Adam", "--out-dir", str(tiny_run["out_dir"]),
                 "--checkpoint-dir", str(broken.parent), "--device", "cpu", "--figures-dir", str(tmp_path / "figures")]
    for main in (numerical_analysis.main, report.main):
        assert main(run_flags) == 1
        assert capsys.readouterr().err.strip().splitlines() == [expected]
