"""Bad images, bad datasets, bad checkpoints and failing resources (docs/reliability.md)."""
import json
import os
import re
import shutil
from pathlib import Path

import pytest
import torch
from PIL import Image

from fakedetect.cli import train as train_main
from fakedetect.data import images
from fakedetect.data.cache import DecodedFaces, decode_dataset, place_images
from fakedetect.data.folders import FacesDataset
from fakedetect.data.images import DatasetError, load_image
from fakedetect.io.files import CheckpointError
from fakedetect.models.registry import load_trained_model
from fakedetect.models.simplenet import SimpleNet


@pytest.fixture
def dataset_copy(tiny_fakes, tmp_path):
    return shutil.copytree(tiny_fakes, tmp_path / "copy")


def error_line(stderr):
    """The one error line of a run's stderr (its progress bars aside); fails unless there is exactly one."""
    errors = [line for line in re.split(r"[\r\n]", stderr) if line.strip() and not re.match(r".*\d+%\|", line)]
    assert len(errors) == 1 and errors[0].startswith("error: "), errors
    return errors[0]


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
    real_open = images.Image.open

    def denied(path, *args, **kwargs):
        if str(path).endswith("locked.png"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)
    monkeypatch.setattr(images.Image, "open", denied)  # root reads any file, so simulate chmod 000
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


def test_a_full_disk_under_the_decode_cache_is_a_warning_and_training_goes_on(dataset_copy, small_filesystems, capsys):
    cache = small_filesystems.mount("cache", size_kib=256)  # 12 decoded images need 2.3 MiB
    decoded = decode_dataset(FacesDataset(dataset_copy / "val"), cache_dir=cache, progress=False)
    assert len(decoded) == 12 and decoded.images.shape == (12, 3, 256, 256)
    out = capsys.readouterr().out
    assert re.search(rf"warning: could not write the decode cache: {re.escape(str(cache))}/val-\w+\.u8: disk full writing it "
                     rf"\(\d+(\.\d [KM]iB| bytes) free on {re.escape(str(cache))}\); decoding into memory", out), out
    assert list(cache.iterdir()) == []  # the temporary file is gone, its space free again


@pytest.mark.slow
def test_a_full_disk_stops_training_with_one_line_and_the_run_resumes(dataset_copy, tmp_path, small_filesystems, capsys):
    checkpoints = small_filesystems.mount("ck", size_kib=300 * 1024)  # epoch 1's two checkpoints fit, epoch 2's do not
    assert train(dataset_copy, tmp_path, "-e", "2", "--checkpoint-dir", str(checkpoints)) == 1
    error = error_line(capsys.readouterr().err)
    assert re.fullmatch(rf"error: {re.escape(str(checkpoints))}/copy_SimpleNet_Adam(_last)?\.pt: disk full writing it "
                        rf"\(\d+\.\d MiB free on {re.escape(str(checkpoints))}\); free some space; "
                        r"run the same command with --resume to continue from the last checkpoint", error), error
    assert sorted(p.name for p in checkpoints.iterdir()) == ["copy_SimpleNet_Adam.pt", "copy_SimpleNet_Adam_last.pt"]
    assert len(json.loads((tmp_path / "out" / "copy_SimpleNet_Adam.json").read_text())["train_loss"]) == 1
    small_filesystems.resize(checkpoints, 600 * 1024)  # space freed
    assert train(dataset_copy, tmp_path, "-e", "2", "--checkpoint-dir", str(checkpoints), "--resume") == 0
    assert "resuming copy_SimpleNet_Adam after epoch 1" in capsys.readouterr().out
    assert len(json.loads((tmp_path / "out" / "copy_SimpleNet_Adam.json").read_text())["train_loss"]) == 2


def test_a_full_disk_under_the_json_says_so_and_keeps_the_checkpoints(dataset_copy, tmp_path, small_filesystems, capsys,
                                                                     monkeypatch):
    out = small_filesystems.mount("out", size_kib=64)
    small_filesystems.fill(out)
    assert train(dataset_copy, tmp_path, "--out-dir", str(out)) == 1  # the config YAML, written first, fails first
    error = error_line(capsys.readouterr().err)
    assert error.startswith(f"error: {out}/copy_SimpleNet_Adam.yaml: disk full writing it (0 bytes free on {out}); "
                            "free some space; no epoch was saved: run the same command again"), error
    monkeypatch.setattr(train_main, "write_config", lambda path, config: None)  # on to the JSON after the epoch
    assert train(dataset_copy, tmp_path, "--out-dir", str(out)) == 1
    error = error_line(capsys.readouterr().err)
    assert error.startswith(f"error: {out}/copy_SimpleNet_Adam.json: disk full writing it (0 bytes free on {out}); "
                            "free some space; run the same command with --resume"), error
    assert sorted(p.name for p in out.iterdir()) == ["filler"]


class FakeImages:
    """Stands in for a 10 GiB uint8 image tensor on a machine without a GPU; moving or pinning it fails the test."""
    def numel(self):
        return 10 * 2**30


def test_a_split_too_big_for_the_gpu_stays_where_it_is_and_is_gathered_per_batch(monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device: (4 * 2**30, 80 * 2**30))
    images = FakeImages()
    decoded = DecodedFaces(images, torch.zeros(1), [], "big_split", mapped_from=Path(".cache/big_split-0.u8"))
    assert place_images(decoded, "cuda") == "memory-mapped from .cache/big_split-0.u8"
    assert decoded.images is images and "does not fit" in capsys.readouterr().out


def test_course_style_checkpoint_without_model_name(tmp_path):
    torch.save({"model": SimpleNet().state_dict(), "test_acc": 0.5}, tmp_path / "course.pt")
    with pytest.raises(CheckpointError, match=r"course.pt: not a detector checkpoint of this toolkit \(no model_name, normalization\)"):
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


def expect_exit_2(main, argv, capsys):
    """Run a script's ``main``; it must exit 2 with an argparse error, whose line is returned."""
    with pytest.raises(SystemExit) as exit_info:
        main([str(arg) for arg in argv])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip()
    assert "Traceback" not in error
    return error.splitlines()[-1]


def test_an_output_path_that_is_an_input_is_refused_and_the_input_kept(tiny_run, tmp_path, capsys):
    from fakedetect.cli import predict

    import ensemble_table
    import results_table
    run_json, checkpoint = tiny_run["json"], tiny_run["best"]
    before = run_json.read_bytes(), checkpoint.read_bytes()
    error = expect_exit_2(results_table.main, [run_json, "-o", run_json], capsys)
    assert f"--output {run_json}: is this command's input {run_json}, which would be overwritten" in error
    error = expect_exit_2(predict.main, [checkpoint, tiny_run["dataset"] / "test", "--csv", checkpoint], capsys)
    assert f"--csv {checkpoint}: is this command's input {checkpoint}, which would be overwritten" in error
    (tmp_path / "r_val.csv").touch()
    error = expect_exit_2(ensemble_table.main, [tmp_path, "r", "-o", tmp_path / "r_val.csv"], capsys)
    assert "r_val.csv: is this command's input" in error
    assert (run_json.read_bytes(), checkpoint.read_bytes()) == before


def test_an_output_folder_that_cannot_be_made_is_refused_before_any_work(tiny_run, tmp_path, capsys):
    from fakedetect.cli import predict, report
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    error = expect_exit_2(train_main.main, ["-d", tiny_run["dataset"], "--device", "cpu", "--out-dir", blocker / "out",
                                            "--checkpoint-dir", tmp_path / "ck"], capsys)
    assert f"--out-dir {blocker / 'out'}: cannot create the folder (" in error
    assert not (tmp_path / "ck").exists()
    error = expect_exit_2(predict.main, [tiny_run["best"], tiny_run["dataset"] / "test", "--csv",
                                         blocker / "scores.csv"], capsys)
    assert f"--csv {blocker / 'scores.csv'}: cannot create the folder (" in error
    error = expect_exit_2(predict.main, [tiny_run["best"], tiny_run["dataset"] / "test", "--cam", blocker], capsys)
    assert f"--cam {blocker}: is a file; give a folder" in error
    error = expect_exit_2(report.main, ["-d", tiny_run["dataset"], "-o", "Adam", "--out-dir", tiny_run["out_dir"],
                                        "--checkpoint-dir", tiny_run["checkpoint_dir"], "--device", "cpu",
                                        "--figures-dir", blocker / "figures"], capsys)
    assert f"--figures-dir {blocker / 'figures'}: cannot create the folder (" in error


def test_analysis_skips_unreadable_images_as_training_does(tiny_run, tmp_path, capsys):
    from fakedetect.analysis import samples
    from fakedetect.cli import numerical_analysis
    dataset = shutil.copytree(tiny_run["dataset"], tmp_path / "tiny_fakes")
    for split in ("train", "test"):
        (dataset / split / "fake" / "0000_zero.png").touch()  # sorts first
    pairs = samples.sample_pairs(FacesDataset(dataset / "train"), 12)
    assert len(pairs) == 12 and all(fake.stat().st_size > 0 for _, fake in pairs)
    assert numerical_analysis.main(["-d", str(dataset), "-o", "Adam", "--out-dir", str(tiny_run["out_dir"]),
                                    "--checkpoint-dir", str(tiny_run["checkpoint_dir"]), "--device", "cpu",
                                    "--figures-dir", str(tmp_path / "figures")]) == 0
    output = capsys.readouterr().out
    assert "warning: skipped" in output and "0000_zero.png" in output
    metrics = json.loads((tmp_path / "figures" / "tiny_fakes_SimpleNet_Adam_metrics.json").read_text())
    assert metrics["count"] == 12


@pytest.mark.parametrize("overwrite, saved, advice", [
    (False, False, "no epoch was saved: run the same command again"),
    (False, True, "run the same command with --resume to continue from the last checkpoint"),
    (True, False, "no epoch was saved: run the same command again"),  # the earlier run's checkpoint is not this one's
    (True, True, "run the same command with --resume in place of --overwrite to continue from the last checkpoint"),
])
def test_ctrl_c_during_training_is_one_line_saying_what_to_run(tiny_fakes, tmp_path, monkeypatch, capsys,
                                                               overwrite, saved, advice):
    if overwrite:
        assert train(tiny_fakes, tmp_path) == 0  # the run --overwrite replaces
    real_run = train_main.Trainer.run

    def interrupted(self, epochs=None, resume=False):
        if saved:
            real_run(self, epochs, resume)
        raise KeyboardInterrupt
    monkeypatch.setattr(train_main.Trainer, "run", interrupted)
    assert train(tiny_fakes, tmp_path, *(["--overwrite"] if overwrite else [])) == 130
    assert capsys.readouterr().err.splitlines()[-1] == f"interrupted; {advice}"


def test_a_dataset_given_as_dot_names_the_run_after_its_folder(tiny_fakes, tmp_path, monkeypatch):
    monkeypatch.chdir(tiny_fakes)
    _, _, run = train_main.parse_args(["-d", ".", "--out-dir", str(tmp_path / "out"),
                                       "--checkpoint-dir", str(tmp_path / "ck")])
    assert run.name == "tiny_fakes_SimpleNet_AdamW"


def test_a_build_from_a_folder_without_photos_or_videos_is_refused_before_writing(tmp_path, capsys):
    from fakedetect.cli import build_faces_dataset
    (tmp_path / "real").mkdir()
    (tmp_path / "fake").mkdir()
    Image.new("RGB", (64, 64)).save(tmp_path / "fake" / "a.png")
    error = expect_exit_2(build_faces_dataset.main, ["--real", tmp_path / "real", "--fake", tmp_path / "fake",
                                                     "-o", tmp_path / "built"], capsys)
    assert f"--real {tmp_path / 'real'}: no photos or videos found" in error
    assert not (tmp_path / "built").exists()


@pytest.fixture
def photos(tiny_fakes, tmp_path):
    """imgs/: 3 real test images; a link inside it to a photo kept elsewhere (elsewhere/linked.png)."""
    folder, elsewhere = tmp_path / "imgs", tmp_path / "elsewhere"
    folder.mkdir()
    elsewhere.mkdir()
    for path in sorted((tiny_fakes / "test" / "real").iterdir())[:3]:
        shutil.copy(path, folder / path.name)
    shutil.copy(sorted((tiny_fakes / "test" / "fake").iterdir())[0], elsewhere / "linked.png")
    (folder / "link.png").symlink_to(elsewhere / "linked.png")
    return folder


def folder_bytes(*folders):
    return {path: path.read_bytes() for folder in folders for path in sorted(Path(folder).rglob("*")) if path.is_file()}


def test_predict_never_writes_over_an_image_it_reads(tiny_run, photos, tmp_path, capsys):
    from fakedetect.cli import predict
    before = folder_bytes(photos, tmp_path / "elsewhere")
    image = sorted(photos.glob("*.png"))[0]
    for flag, output, inputs, expected in (
            ("--csv", image, [photos], f"lies inside the input folder {photos}"),  # a file found in a folder
            ("--json", image, [photos / "*.png"],
             f"is {image}, an input of this command (through {photos / '*.png'}), which would be overwritten"),
            ("--csv", tmp_path / "elsewhere" / "linked.png", [photos],  # through a link in the folder
             f"is {tmp_path / 'elsewhere' / 'linked.png'}, an input of this command (through {photos})"),
            ("--cam", photos / "cams", [photos], f"lies inside the input folder {photos}")):
        error = expect_exit_2(predict.main, [tiny_run["best"], *inputs, flag, output], capsys)
        assert f"{flag} {output}: {expected}" in error
    error = expect_exit_2(predict.main, [tiny_run["best"], photos, "--csv", tmp_path / "r.out", "--json",
                                         tmp_path / "r.out"], capsys)
    assert f"--json {tmp_path / 'r.out'}: is also --csv's output; give each output its own path" in error
    assert folder_bytes(photos, tmp_path / "elsewhere") == before and not (photos / "cams").exists()


def test_a_symlink_loop_as_an_output_or_input_is_reported_as_a_loop(tiny_run, photos, tmp_path, capsys):
    from fakedetect.cli import predict
    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    error = expect_exit_2(predict.main, [tiny_run["best"], photos, "--csv", loop], capsys)
    assert error.endswith(f"--csv {loop}: cannot be checked: {loop}: a symbolic link loop; fix or remove the link")
    error = expect_exit_2(predict.main, [tiny_run["best"], loop, "--csv", tmp_path / "ok.csv"], capsys)
    assert f"{loop}: a symbolic link loop" in error


def test_a_build_never_writes_into_or_over_its_sources(photos, tmp_path, capsys):
    from fakedetect.cli import build_faces_dataset
    real, fake = tmp_path / "r" / "real", tmp_path / "r" / "fake"
    shutil.copytree(photos, real, symlinks=True)
    shutil.copytree(photos, fake, symlinks=True)
    before = folder_bytes(tmp_path / "r")
    for output, expected in ((fake, f"is this command's input {fake}"), (real / "out", f"lies inside the input folder {real}"),
                             (tmp_path / "r", f"contains this command's input {real}")):
        for extra in ([], ["--overwrite"]):
            error = expect_exit_2(build_faces_dataset.main, ["--real", real, "--fake", fake, "-o", output, *extra], capsys)
            assert f"--output {output}: {expected}" in error
    assert folder_bytes(tmp_path / "r") == before


def test_overwrite_deletes_only_what_the_earlier_build_made(photos, tmp_path, capsys):
    from fakedetect.cli import build_faces_dataset
    from fakedetect.faces import build
    out = tmp_path / "mine"
    (out / "train" / "real").mkdir(parents=True)
    (out / "train" / "real" / "holiday.jpg").write_bytes(b"a user's photo")
    error = expect_exit_2(build_faces_dataset.main, ["--real", photos, "--fake", photos.parent / "elsewhere", "-o", out,
                                       "--overwrite"], capsys)
    assert f"--output {out}: its split folders are not listed by a manifest.csv of build_faces_dataset.py" in error
    (out / "train" / "real" / "crop.png").write_bytes(b"a crop of the earlier build")
    row = {field: "" for field in build.MANIFEST_FIELDS} | {"image": "train/real/crop.png", "status": "ok"}
    (out / "manifest.csv").write_text(",".join(build.MANIFEST_FIELDS) + "\n" + ",".join(row.values()) + "\n")
    error = expect_exit_2(build_faces_dataset.main, ["--real", photos, "--fake", photos.parent / "elsewhere", "-o", out,
                                       "--overwrite"], capsys)
    assert f"{out / 'train' / 'real' / 'holiday.jpg'} was not made by the earlier build" in error
    assert "nothing was deleted" in error
    assert (out / "train" / "real" / "holiday.jpg").read_bytes() == b"a user's photo"


def test_training_and_analysis_outputs_may_not_go_into_the_dataset_splits(tiny_run, tmp_path, capsys):
    from fakedetect.cli import report
    dataset = tiny_run["dataset"]
    for flag in ("--out-dir", "--checkpoint-dir", "--cache-dir", "--tensorboard"):
        error = expect_exit_2(train_main.main, ["-d", dataset, "--device", "cpu", flag, dataset / "train" / "x"], capsys)
        assert f"{flag} {dataset / 'train' / 'x'}: lies inside the input folder {dataset / 'train'}" in error
    error = expect_exit_2(report.main, ["-d", dataset, "-o", "Adam", "--out-dir", tiny_run["out_dir"],
                                        "--checkpoint-dir", tiny_run["checkpoint_dir"], "--device", "cpu",
                                        "--figures-dir", dataset / "test"], capsys)
    assert f"--figures-dir {dataset / 'test'}: is this command's input {dataset / 'test'}" in error


def test_a_build_onto_a_file_or_a_read_only_mount_stops_before_any_face_detection(photos, tmp_path, capsys,
                                                                                small_filesystems, monkeypatch):
    from fakedetect.cli import build_faces_dataset
    from fakedetect.faces import build
    monkeypatch.setattr(build, "crop_source", lambda *args: pytest.fail("faces were detected before the refusal"))
    a_file = tmp_path / "a_file"
    a_file.write_text("not a folder")
    sources = ["--real", photos, "--fake", tmp_path / "elsewhere"]
    error = expect_exit_2(build_faces_dataset.main, [*sources, "-o", a_file], capsys)
    assert f"--output {a_file}: is a file; give a folder" in error
    mount = small_filesystems.mount("read_only", 256)
    small_filesystems.read_only(mount)
    error = expect_exit_2(build_faces_dataset.main, [*sources, "-o", mount / "faces"], capsys)
    assert f"--output {mount / 'faces'}: cannot create or write the folder ({mount}: not writable, or a read-only" in error
