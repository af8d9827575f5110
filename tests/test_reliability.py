"""Bad images, bad datasets, bad checkpoints and failing resources (docs/reliability.md)."""
import json
import os
import shutil

import pytest
import torch
from PIL import Image

import faces_dataset
import fileio
import train_main
from faces_dataset import DatasetError, DecodedFaces, FacesDataset, decode_dataset, load_image, place_images
from fileio import CheckpointError
from models import SimpleNet, load_trained_model


@pytest.fixture
def dataset_copy(tiny_fakes, tmp_path):
    return shutil.copytree(tiny_fakes, tmp_path / "copy")


def train(dataset, tmp_path, *flags):
    return train_main.main(["-d", str(dataset), "-o", "Adam", "-b", "8", "-e", "1", "--device", "cpu",
                            "--out-dir", str(tmp_path / "out"), "--checkpoint-dir", str(tmp_path / "ck"),
                            "--cache-dir", str(tmp_path / "cache"), *flags])


@pytest.mark.parametrize("suffix", [".jpg", ".png"])
def test_truncated_images_are_refused_by_name(tmp_path, suffix):
    Image.effect_noise((256, 256), 64).convert("RGB").save(tmp_path / f"whole{suffix}")
    data = (tmp_path / f"whole{suffix}").read_bytes()
    (tmp_path / f"cut{suffix}").write_bytes(data[: len(data) // 2])
    with pytest.raises(DatasetError, match=f"cut{suffix}: cannot read image"):
        load_image(tmp_path / f"cut{suffix}")


def test_unreadable_file_is_reported(tmp_path, monkeypatch):
    Image.new("RGB", (256, 256)).save(tmp_path / "locked.png")
    real_open = faces_dataset.Image.open

    def denied(path, *args, **kwargs):
        if str(path).endswith("locked.png"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)
    monkeypatch.setattr(faces_dataset.Image, "open", denied)  # root reads any file, so simulate chmod 000
    with pytest.raises(DatasetError, match="locked.png: cannot read image.*Permission denied"):
        load_image(tmp_path / "locked.png")


def test_symlink_loops_are_ignored(dataset_copy):
    real = dataset_copy / "train" / "real"
    os.symlink(real, real / "loop")
    os.symlink(real / "b.png", real / "a.png")
    os.symlink(real / "a.png", real / "b.png")
    dataset = FacesDataset(dataset_copy / "train")
    assert len(dataset.real_image_files) == 12


@pytest.mark.parametrize("path_flags", [[], ["--no-cache", "--workers", "2"]])
def test_bad_files_are_skipped_with_a_count_and_strict_stops(dataset_copy, tmp_path, capsys, path_flags):
    (dataset_copy / "train" / "fake" / "zero.png").write_bytes(b"")
    (dataset_copy / "train" / "real" / "text.jpg").write_text("not an image")
    for run in ("first", "again"):  # the second run reads the decode cache, and must still say so
        assert train(dataset_copy, tmp_path, "--overwrite", *path_flags) == 0
        out = capsys.readouterr().out
        assert "zero.png" in out and "text.jpg" in out and "2 of 26 files" in out
        assert "train: 24 images" in out
    assert train(dataset_copy, tmp_path, "--overwrite", "--strict", *path_flags) == 1
    error = capsys.readouterr().err
    assert "text.jpg: cannot read image" in error and "Traceback" not in error


def test_test_split_with_one_class_reports_accuracy_and_undefined_auc(dataset_copy, tmp_path, capsys):
    shutil.rmtree(dataset_copy / "test" / "fake")
    assert train(dataset_copy, tmp_path) == 0
    assert "holds one class only" in capsys.readouterr().out
    history = json.loads((tmp_path / "out" / "copy_SimpleNet_Adam.json").read_text())
    assert history["test_auc"] == [None] and history["test_balanced_acc"] == [None]
    assert 0.0 <= history["test_acc"][0] <= 1.0


def test_val_auc_selection_needs_both_classes(dataset_copy, tmp_path, capsys):
    shutil.rmtree(dataset_copy / "val" / "real")
    assert train(dataset_copy, tmp_path, "--selection-metric", "val_auc") == 1
    assert "--selection-metric val_acc" in capsys.readouterr().err


def test_empty_split_is_an_error(dataset_copy, tmp_path, capsys):
    for folder in ("real", "fake"):
        shutil.rmtree(dataset_copy / "val" / folder)
        (dataset_copy / "val" / folder).mkdir()
    assert train(dataset_copy, tmp_path) == 1
    assert "val: no images in real/ or fake/" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_images_shared_between_train_and_test_are_counted(dataset_copy, tmp_path, capsys):
    for index in range(2):
        shutil.copy(dataset_copy / "train" / "real" / f"{index:05d}.png", dataset_copy / "test" / "real" / f"dup{index}.png")
    assert train(dataset_copy, tmp_path) == 0
    assert "2 image(s) of" in capsys.readouterr().out


def test_a_failing_cache_write_is_reported_and_training_goes_on(dataset_copy, tmp_path, monkeypatch, capsys):
    def disk_full(path, write):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(fileio, "atomic_write", disk_full)
    decoded = decode_dataset(FacesDataset(dataset_copy / "val"), cache_dir=tmp_path / "cache", progress=False)
    assert len(decoded) == 12
    assert "could not write the decode cache" in capsys.readouterr().out


class FakeImages:
    """Stands in for a uint8 image tensor on a machine without a GPU."""
    def __init__(self):
        self.pinned = False

    def numel(self):
        return 10 * 2**30

    def pin_memory(self):
        self.pinned = True
        return self


def test_device_cache_falls_back_to_pinned_host_memory(monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device: (4 * 2**30, 80 * 2**30))
    decoded = DecodedFaces(FakeImages(), torch.zeros(1), [], "big_split")
    assert place_images(decoded, "cuda") == "host memory"
    assert decoded.images.pinned and "does not fit" in capsys.readouterr().out


def test_course_style_checkpoint_without_model_name(tmp_path):
    torch.save({"model": SimpleNet().state_dict(), "test_acc": 0.5}, tmp_path / "course.pt")
    with pytest.raises(CheckpointError, match=r"course.pt: not a checkpoint of this toolkit; expected .*'model_name'"):
        load_trained_model(tmp_path / "course.pt")


def test_resume_from_another_architecture_is_refused(tiny_run, tmp_path, capsys):
    ck = tmp_path / "ck"
    ck.mkdir()
    shutil.copy(tiny_run["last"], ck / "tiny_fakes_XceptionBased_Adam_last.pt")
    code = train_main.main(["-m", "XceptionBased", "--no-pretrained", "-d", str(tiny_run["dataset"]), "-o", "Adam",
                            "-e", "3", "--device", "cpu", "--resume", "--out-dir", str(tmp_path / "out"),
                            "--checkpoint-dir", str(ck), "--cache-dir", str(tmp_path / "cache")])
    assert code == 1
    assert "holds a SimpleNet run, not XceptionBased" in capsys.readouterr().err
