"""export.py: ONNX and TorchScript files score as the checkpoint does, carry its threshold and
class names, are scored by predict.py, and never overwrite the checkpoint."""
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fakedetect.cli import export, predict
from fakedetect.io.files import CheckpointError, save_checkpoint
from fakedetect.models.registry import build_model, has_global_pooling, load_trained_model, model_normalization
from fakedetect.serve import export as serve_export
from fakedetect.serve import predict as serve_predict

onnxruntime = pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

BUILT_IN = ("SimpleNet", pytest.param("XceptionBased", marks=pytest.mark.slow),  # about 20 s on 2 CPU cores
            "timm:resnet18", "patch:resnet18")
TOLERANCE = 1e-4
SIMPLENET_NORMALIZATION = [(0.45, 0.40, 0.35), (0.22, 0.21, 0.20)]  # dataset statistics, as a run would store


def write_checkpoint(path, name, threshold=0.4321):
    """A random-weight best checkpoint of ``name`` with the keys Trainer.run saves."""
    torch.manual_seed(0)
    model = build_model(name, pretrained=False)
    normalization = SIMPLENET_NORMALIZATION if name == "SimpleNet" else list(model_normalization(name, model))
    save_checkpoint(path, {"model": model.state_dict(), "model_name": name, "dataset": "tiny_fakes", "epoch": 1,
                           "val_acc": 0.5, "val_auc": 0.5, "threshold": threshold,
                           "normalization": normalization, "config": {"model": name}})
    return path


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """``exported(name)``: {checkpoint, onnx (uint8 input), onnx_float, torchscript} paths, exported once per model."""
    done = {}

    def export_model(name):
        if name not in done:
            folder = tmp_path_factory.mktemp(name.replace(":", "_"))
            checkpoint = write_checkpoint(folder / "best.pt", name)
            paths = {"checkpoint": checkpoint, "onnx": folder / "model.onnx", "onnx_float": folder / "float.onnx",
                     "torchscript": folder / "model.torchscript.pt"}
            assert export.main([str(checkpoint), "--format", "onnx", "-o", str(paths["onnx"])]) == 0
            assert export.main([str(checkpoint), "--format", "onnx", "--input", "float32",
                                "-o", str(paths["onnx_float"])]) == 0
            assert export.main([str(checkpoint), "--format", "torchscript", "-o", str(paths["torchscript"])]) == 0
            done[name] = paths
        return done[name]
    return export_model


def checkpoint_probabilities(checkpoint_path, images):
    """P(fake) of a uint8 batch as predict.py computes it from the checkpoint."""
    model, checkpoint = load_trained_model(checkpoint_path)
    return serve_predict.fake_probabilities([(model, checkpoint["normalization"])], images, "cpu")


def random_images(count, height=256, width=256, seed=0):
    return torch.randint(0, 256, (count, 3, height, width), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("name", BUILT_IN)
def test_exported_probabilities_equal_the_checkpoints(name, exported):
    """ONNX (uint8 and float32 inputs, through onnxruntime) and TorchScript (uint8 and float
    inputs) give the checkpoint's P(fake) within 1e-4; models with global pooling at another size too."""
    paths = exported(name)
    sizes = [(256, 256), (192, 224)] if has_global_pooling(name) else [(256, 256)]
    uint8_session = onnxruntime.InferenceSession(str(paths["onnx"]), providers=["CPUExecutionProvider"])
    float_session = onnxruntime.InferenceSession(str(paths["onnx_float"]), providers=["CPUExecutionProvider"])
    scripted = serve_export.without_deprecation_notices(lambda: torch.jit.load(str(paths["torchscript"])))
    differences = {}
    for count, (height, width) in zip((2, 1), sizes):
        images = random_images(count, height, width)
        expected = checkpoint_probabilities(paths["checkpoint"], images)
        unit = images.float() / 255
        with torch.no_grad():
            got = {"onnx uint8": uint8_session.run(None, {"images": images.numpy()})[0],
                   "onnx float32": float_session.run(None, {"images": unit.numpy()})[0],
                   "torchscript uint8": scripted(images).numpy(), "torchscript float": scripted(unit).numpy()}
        for kind, probabilities in got.items():
            assert probabilities.shape == (count,) and probabilities.dtype == np.float32
            differences[kind] = max(differences.get(kind, 0.0), float(np.abs(probabilities - expected).max()))
    print(f"{name}: max |P(fake) - checkpoint's| " + ", ".join(f"{kind} {value:.1e}" for kind, value in differences.items()))
    assert max(differences.values()) <= TOLERANCE, differences


def test_metadata_carries_threshold_class_names_and_normalization(exported):
    paths = exported("SimpleNet")
    onnx_metadata = {key: json.loads(value) for key, value in onnxruntime.InferenceSession(
        str(paths["onnx"]), providers=["CPUExecutionProvider"]).get_modelmeta().custom_metadata_map.items()}
    files = {serve_export.METADATA_FILE: ""}
    serve_export.without_deprecation_notices(lambda: torch.jit.load(str(paths["torchscript"]), _extra_files=files))
    script_metadata = json.loads(files[serve_export.METADATA_FILE])
    for metadata, input_dtype in ((onnx_metadata, "uint8"), (script_metadata, "uint8 or float32")):
        assert metadata["threshold"] == pytest.approx(0.4321) and metadata["eer_threshold"] == pytest.approx(0.4321)
        assert metadata["class_names"] == ["real", "fake"]
        assert metadata["model_name"] == "SimpleNet" and metadata["dataset"] == "tiny_fakes"
        np.testing.assert_allclose(metadata["normalization"], SIMPLENET_NORMALIZATION)
        assert metadata["input_dtype"] == input_dtype and metadata["input_layout"] == "NCHW"


def test_a_checkpoint_without_threshold_exports_0_5(tmp_path):
    checkpoint = write_checkpoint(tmp_path / "one_class.pt", "timm:resnet18", threshold=None)
    assert export.main([str(checkpoint), "--format", "onnx", "-o", str(tmp_path / "m.onnx")]) == 0
    model, metadata = serve_export.load_exported_model(tmp_path / "m.onnx")
    assert metadata["threshold"] is None  # so predict.py says the checkpoint had none
    stored = onnxruntime.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    assert json.loads(stored.get_modelmeta().custom_metadata_map["threshold"]) == 0.5


@pytest.fixture()
def image_folder(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    for index, size in enumerate([(256, 256), (300, 200), (180, 240)]):
        pixels = np.random.default_rng(index).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"{index}.png")
    return folder


def scored(capsys, tmp_path, detector, *inputs):
    out = tmp_path / "out.json"
    out.unlink(missing_ok=True)
    code = predict.main([str(detector), *map(str, inputs), "--json", str(out), "--device", "cpu", "--no-progress"])
    capsys.readouterr()
    assert code == 0
    return json.loads(out.read_text())


@pytest.mark.parametrize("name", ("SimpleNet", "timm:resnet18"))
def test_predict_scores_an_exported_model_as_the_checkpoint(name, exported, image_folder, tmp_path, capsys):
    paths = exported(name)
    expected = scored(capsys, tmp_path, paths["checkpoint"], image_folder)
    for kind in ("onnx", "onnx_float", "torchscript"):
        got = scored(capsys, tmp_path, paths[kind], image_folder)
        np.testing.assert_allclose([row["fake_probability"] for row in got["results"]],
                                   [row["fake_probability"] for row in expected["results"]], atol=TOLERANCE)
        assert got["threshold"] == pytest.approx(expected["threshold"]) and got["model"] == name
        assert got["threshold_source"] == expected["threshold_source"]


def test_predict_ensemble_and_tta_mix_exported_and_checkpoints(exported, image_folder, tmp_path, capsys):
    simple, resnet = exported("SimpleNet"), exported("timm:resnet18")
    expected = scored(capsys, tmp_path, simple["checkpoint"], image_folder, "--ensemble", resnet["checkpoint"], "--tta")
    got = scored(capsys, tmp_path, simple["onnx"], image_folder, "--ensemble", resnet["torchscript"], "--tta")
    np.testing.assert_allclose([row["fake_probability"] for row in got["results"]],
                               [row["fake_probability"] for row in expected["results"]], atol=TOLERANCE)


def test_output_that_is_the_checkpoint_is_refused(exported, capsys):
    checkpoint = exported("SimpleNet")["checkpoint"]
    before = checkpoint.read_bytes()
    for export_format in ("torchscript", "onnx"):
        with pytest.raises(SystemExit) as exit_info:
            export.main([str(checkpoint), "--format", export_format, "-o", str(checkpoint), "--overwrite"])
        assert exit_info.value.code == 2
        error = capsys.readouterr().err.strip()
        assert len(error.splitlines()) == 1 and "is this command's input" in error
    assert checkpoint.read_bytes() == before


def test_existing_output_needs_overwrite(exported, tmp_path, capsys):
    checkpoint = exported("SimpleNet")["checkpoint"]
    output = tmp_path / "mine.onnx"
    output.write_text("a user's file")
    with pytest.raises(SystemExit) as exit_info:
        export.main([str(checkpoint), "--format", "onnx", "-o", str(output)])
    assert exit_info.value.code == 2 and "--overwrite" in capsys.readouterr().err
    assert output.read_text() == "a user's file"
    assert export.main([str(checkpoint), "--format", "onnx", "-o", str(output), "--overwrite"]) == 0
    assert serve_export.is_exported_model(output) and serve_export.load_exported_model(output)[1]["model_name"] == "SimpleNet"


@pytest.mark.parametrize("argv, message", [
    (["--format", "onnx", "-o", "model.pt"], "must end in .onnx"),
    (["--format", "torchscript", "-o", "model.onnx"], "names an ONNX file"),
    (["--format", "torchscript", "--input", "float32", "-o", "model.ts"], "--input is for onnx only"),
    (["--format", "tflite", "-o", "model.tflite"], "invalid choice"),
])
def test_usage_errors_are_one_line_exit_2(argv, message, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        export.main(["best.pt", *argv])
    error = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and len(error.splitlines()) == 1 and message in error
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("export_format, output", [("onnx", "m.onnx"), ("torchscript", "m.torchscript.pt")])
def test_bad_checkpoint_is_one_line_exit_1(export_format, output, tmp_path, capsys):
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    assert export.main([str(tmp_path / "bad.pt"), "--format", export_format, "-o", str(tmp_path / output)]) == 1
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and error.startswith("error:") and "bad.pt" in error
    assert not (tmp_path / output).exists()


def test_predict_refuses_cam_and_bad_files_of_exported_models(exported, image_folder, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        predict.main([str(exported("SimpleNet")["onnx"]), str(image_folder), "--cam", str(tmp_path / "cams")])
    assert exit_info.value.code == 2 and "--cam needs checkpoints" in capsys.readouterr().err
    (tmp_path / "broken.onnx").write_bytes(b"garbage")
    assert predict.main([str(tmp_path / "broken.onnx"), str(image_folder), "--no-progress", "--device", "cpu"]) == 1
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "broken.onnx: not a loadable ONNX model" in error


def test_missing_onnx_packages_are_one_line_each(exported, tmp_path, monkeypatch, capsys):
    paths = exported("SimpleNet")
    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(SystemExit) as exit_info:
        export.main([str(paths["checkpoint"]), "--format", "onnx", "-o", str(tmp_path / "m.onnx")])
    assert "pip install 'onnx" in str(exit_info.value.code) and not (tmp_path / "m.onnx").exists()
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(CheckpointError, match="needs onnxruntime; pip install onnxruntime"):
        serve_export.load_exported_model(paths["onnx"])


@pytest.mark.slow
def test_bench_export_prints_a_row_per_model_and_runtime(capsys):
    """tools/bench_export.py times the three runtimes of each model (here a tiny timm model, one batch)."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("bench_export", Path(__file__).resolve().parents[1] / "tools" / "bench_export.py")
    bench_export = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench_export)
    assert bench_export.main(["--models", "timm:test_resnet", "--batch-sizes", "1", "--iterations", "1"]) == 0
    rows = [line.split(" | ") for line in capsys.readouterr().out.splitlines() if line.startswith("| timm:test_resnet")]
    assert [row[1] for row in rows] == ["PyTorch eager", "TorchScript", "onnxruntime"]
    assert all(float(row[2].replace(",", "")) > 0 for row in rows) and rows[0][3] == "1.00 |"
