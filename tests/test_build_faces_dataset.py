"""build_faces_dataset.py: face crops from photos and videos, frames per video, split by source, training."""
import csv
import shutil
from collections import defaultdict

import numpy as np
import pytest
from PIL import Image, ImageFilter

from fakedetect.cli import build_faces_dataset
from fakedetect.cli import train as train_main
from fakedetect.data import demo_media, folders
from fakedetect.faces import build, video
from fakedetect.faces.detection import FaceCropper

skimage_data = pytest.importorskip("skimage.data")

# The astronaut's face, measured on the 512x512 photo: centre (224, 113), about 95 pixels wide.
FACE_CENTER, FACE_SIDE = np.array([224, 113]), 95
SCALE = 0.5  # the photo is pasted at 256x256
CANVAS = (480, 360)


def astronaut_scene(offset, fake=False):
    """The astronaut photo (256x256) pasted at ``offset`` on a plain canvas; ``fake`` blurs the face (a crude edit)."""
    photo = Image.fromarray(skimage_data.astronaut()).resize((256, 256))
    if fake:
        box = (80, 25, 145, 95)
        photo.paste(photo.crop(box).filter(ImageFilter.GaussianBlur(3)), box[:2])
    canvas = Image.new("RGB", CANVAS, (70, 110, 140))
    canvas.paste(photo, tuple(offset))
    return canvas


def expected_center(offset):
    return np.asarray(offset) + FACE_CENTER * SCALE


def read_manifest(out):
    with open(out / "manifest.csv", newline="") as f:
        return list(csv.DictReader(f))


def box_center(row):
    x, y, w, h = (int(row[key]) for key in ("face_x", "face_y", "face_w", "face_h"))
    return np.array([x + w / 2, y + h / 2]), w


VIDEO_OFFSETS = [(int(20 + 14 * i), int(10 + 6 * i)) for i in range(12)]


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    """real/: 4 photos and 2 videos (12 frames, face drifting) of the astronaut; fake/: the same with a blurred face,
    plus a blank photo (no face) in real/."""
    root = tmp_path_factory.mktemp("sources")
    for label in ("real", "fake"):
        folder = root / label
        folder.mkdir()
        for index, offset in enumerate([(0, 0), (200, 90), (100, 40), (220, 0)]):
            astronaut_scene(offset, fake=label == "fake").save(folder / f"photo_{index}.png")
        for index in range(2):
            offsets = VIDEO_OFFSETS[::-1] if index else VIDEO_OFFSETS
            frames = [astronaut_scene(offset, label == "fake") for offset in offsets]
            demo_media.write_video(folder / f"clip_{index}.mp4", frames)
    Image.new("RGB", CANVAS, (128, 128, 128)).save(root / "real" / "blank.png")
    return root


@pytest.fixture(scope="module")
def built(sources, tmp_path_factory):
    out = tmp_path_factory.mktemp("built") / "faces"
    code = build_faces_dataset.main(["--real", str(sources / "real"), "--fake", str(sources / "fake"), "-o", str(out),
                       "--frames", "4", "--ratios", "0.5", "0.25", "0.25", "--no-progress"])
    return code, out, read_manifest(out)


def test_photo_crop_lands_around_the_face(tmp_path):
    offset = (150, 60)
    rgb = np.asarray(astronaut_scene(offset))
    crop, box = FaceCropper(detector="haar")(rgb)  # the truth box below was measured for the Haar detector
    x, y, w, h = box
    assert np.abs(np.array([x + w / 2, y + h / 2]) - expected_center(offset)).max() < 8
    assert 0.75 < w / (FACE_SIDE * SCALE) < 1.35
    truth_side = 1.3 * FACE_SIDE * SCALE
    left, top = expected_center(offset) - truth_side / 2
    truth = Image.fromarray(rgb).crop((round(left), round(top), round(left + truth_side), round(top + truth_side)))
    assert crop.size == (256, 256)
    coarse = [np.asarray(image.resize((16, 16), Image.BOX), dtype=np.float32) for image in (crop, truth)]
    assert np.abs(coarse[0] - coarse[1]).mean() < 30  # a crop 30 pixels off scores about 80


def test_crop_is_square_enlarged_and_black_outside_the_image():
    cropper = FaceCropper(enlarge=1.3, size=64)
    rgb = np.full((100, 100, 3), 200, np.uint8)
    crop = np.asarray(cropper.crop(rgb, (0, 0, 50, 50)))
    assert crop.shape == (64, 64, 3)
    assert crop[0, 0].tolist() == [0, 0, 0] and crop[-1, -1].tolist() == [200, 200, 200]


def test_frames_per_video_as_asked_and_crops_follow_the_face(built, sources):
    code, out, rows = built
    clip = [row for row in rows if row["source"] == str(sources / "real" / "clip_0.mp4")]
    assert [int(row["frame"]) for row in clip] == [0, 4, 7, 11] == video.frame_indices(12, 4)
    for row in clip:
        assert row["status"] == "ok" and (out / row["image"]).is_file()
        center, _ = box_center(row)
        assert np.abs(center - expected_center(VIDEO_OFFSETS[int(row["frame"])])).max() < 10
    assert video.frame_indices(3, 10) == [0, 1, 2]


def test_split_by_source_holds(built):
    code, out, rows = built
    assert code == 0
    split_of = defaultdict(set)
    for row in rows:
        if row["status"] == "ok":
            split_of[row["source"]].add(row["split"])
            assert row["image"].startswith(f"{row['split']}/{row['label']}/")
    assert len(split_of) == 12
    assert all(len(splits) == 1 for splits in split_of.values())
    written = sorted(path.relative_to(out).as_posix() for path in out.glob("*/*/*.png"))
    assert written == sorted(row["image"] for row in rows if row["status"] == "ok")
    for split in build_faces_dataset.SPLITS:
        for label in ("real", "fake"):
            assert list((out / split / label).glob("*.png")), f"{split}/{label} is empty"


def test_faces_not_found_are_counted_and_listed(built, sources, capsys, tmp_path):
    code, out, rows = built
    missing = [row for row in rows if row["status"] == "no face"]
    assert [row["source"] for row in missing] == [str(sources / "real" / "blank.png")]
    assert missing[0]["image"] == "" and missing[0]["split"] == ""
    build_faces_dataset.main(["--real", str(sources / "real"), "--fake", str(sources / "fake"), "-o", str(tmp_path / "again"),
                "--frames", "4", "--no-progress"])  # 2 frames 3.5 face sides apart are two faces to the face track
    printed = capsys.readouterr().out
    assert "no face found in 1 photo(s)/frame(s)" in printed and str(sources / "real" / "blank.png") in printed


def test_group_by_folder_keeps_an_identity_on_one_side(tmp_path):
    for label in ("real", "fake"):
        for person in range(4):
            folder = tmp_path / "raw" / label / f"id{person}"
            folder.mkdir(parents=True)
            for index in range(2):
                astronaut_scene((40 * person + 60 * index, 30 * index), fake=label == "fake").save(folder / f"{index}.png")
    code = build_faces_dataset.main(["--real", str(tmp_path / "raw" / "real"), "--fake", str(tmp_path / "raw" / "fake"),
                       "-o", str(tmp_path / "out"), "--group-by", "folder", "--ratios", "0.5", "0.25", "0.25",
                       "--no-progress"])
    rows = read_manifest(tmp_path / "out")
    assert code == 0 and len(rows) == 16 and all(row["status"] == "ok" for row in rows)
    split_of = defaultdict(set)
    for row in rows:
        split_of[row["group"]].add(row["split"])
    assert sorted(split_of) == ["id0", "id1", "id2", "id3"]
    assert all(len(splits) == 1 for splits in split_of.values())


def test_split_assignment_follows_ratios_and_seed():
    assert build.split_counts(10, (0.8, 0.1, 0.1)) == [8, 1, 1]
    assert build.split_counts(3, (0.8, 0.1, 0.1)) == [1, 1, 1]
    assert build.split_counts(1, (0.8, 0.1, 0.1)) == [1, 0, 0]
    assert build.split_counts(4, (1.0, 0.0, 0.0)) == [4, 0, 0]
    groups = {f"real/{i}": {"real"} for i in range(20)} | {f"fake/{i}": {"fake"} for i in range(20)}
    first = build.assign_splits(groups, (0.6, 0.2, 0.2), seed=1)
    assert first == build.assign_splits(groups, (0.6, 0.2, 0.2), seed=1)
    assert first != build.assign_splits(groups, (0.6, 0.2, 0.2), seed=2)
    for label in ("real", "fake"):
        counts = [sum(split == name for group, split in first.items() if group.startswith(label)) for name in build_faces_dataset.SPLITS]
        assert counts == [12, 4, 4]


def test_unreadable_source_is_reported_and_skipped(sources, tmp_path, capsys):
    real = tmp_path / "real"
    real.mkdir()
    for index in range(3):
        astronaut_scene((60 * index, 20)).save(real / f"{index}.png")
    (real / "broken.mp4").write_bytes(b"not a video")
    (real / "broken.jpg").write_bytes(b"not a jpeg")
    code = build_faces_dataset.main(["--real", str(real), "--fake", str(sources / "fake"), "-o", str(tmp_path / "out"),
                       "--frames", "4", "--no-progress"])  # not 2: see test_faces_not_found_are_counted_and_listed
    assert code == 1
    statuses = {row["source"]: row["status"] for row in read_manifest(tmp_path / "out")}
    assert statuses[str(real / "broken.mp4")].startswith("unreadable: cannot read video")
    assert statuses[str(real / "broken.jpg")].startswith("unreadable: cannot read image")
    assert sum(status == "ok" for status in statuses.values()) == 3 + 4 + 2
    assert "broken.mp4" in capsys.readouterr().err


def test_refuses_to_overwrite_an_earlier_build(built, sources, capsys):
    _, out, _ = built
    with pytest.raises(SystemExit) as exit_info:
        build_faces_dataset.main(["--real", str(sources / "real"), "--fake", str(sources / "fake"), "-o", str(out)])
    assert exit_info.value.code == 2 and "--overwrite" in capsys.readouterr().err


def test_sources_with_the_same_stem_keep_their_own_crops(tmp_path):
    for label in ("real", "fake"):
        (tmp_path / label / "a").mkdir(parents=True)
        astronaut_scene((0, 0), fake=label == "fake").save(tmp_path / label / "p0.png")
        astronaut_scene((150, 60), fake=label == "fake").save(tmp_path / label / "p0.jpg", quality=95)
        astronaut_scene((60, 30), fake=label == "fake").save(tmp_path / label / "a" / "b.png")
        astronaut_scene((200, 90), fake=label == "fake").save(tmp_path / label / "a__b.png")
        astronaut_scene((100, 40), fake=label == "fake").save(tmp_path / label / "clip_f000000.png")
        demo_media.write_video(tmp_path / label / "clip.mp4", [astronaut_scene((20, 10), fake=label == "fake")] * 2)
    rows = build.build(tmp_path / "real", tmp_path / "fake", tmp_path / "out", frames=2, ratios=(1, 0, 0),
                       progress=False)
    images = [row["image"] for row in rows if row["status"] == "ok"]
    assert len(images) == 14 and len(set(images)) == 14
    assert all((tmp_path / "out" / image).is_file() for image in images)


def test_overwrite_replaces_an_earlier_build_only_when_the_new_one_is_whole(built, sources, tmp_path, monkeypatch):
    _, out, manifest = built
    copy = tmp_path / "faces"
    shutil.copytree(out, copy)
    before = (copy / "manifest.csv").read_bytes()
    monkeypatch.setattr(build, "crop_source", lambda *args: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(KeyboardInterrupt):  # killed while building
        build_faces_dataset.main(["--real", str(sources / "real"), "--fake", str(sources / "fake"), "-o", str(copy),
                    "--overwrite", "--workers", "1", "--no-progress"])  # in this process, where the patch is
    assert (copy / "manifest.csv").read_bytes() == before
    assert sorted(p.name for p in (copy / "train" / "real").iterdir()) == sorted(
        p.name for p in (out / "train" / "real").iterdir())
    monkeypatch.undo()
    assert build_faces_dataset.main(["--real", str(sources / "real"), "--fake", str(sources / "fake"), "-o", str(copy),
                       "--frames", "2", "--ratios", "0.5", "0.25", "0.25", "--overwrite", "--no-progress"]) == 0
    rebuilt = read_manifest(copy)
    assert len(rebuilt) < len(manifest)  # 2 frames per video now, not 4
    assert all((copy / row["image"]).is_file() for row in rebuilt if row["status"] == "ok")
    assert not (copy / build.NEW_BUILD).exists() and not (copy / build.STAGING).exists()


def test_output_trains_with_train_main(built, tmp_path):
    _, out, _ = built
    code = train_main.main(["-m", "SimpleNet", "-d", str(out), "-o", "Adam", "-b", "8", "-e", "1", "--device", "cpu",
                            "--out-dir", str(tmp_path / "out"), "--checkpoint-dir", str(tmp_path / "checkpoints"),
                            "--cache-dir", str(tmp_path / "cache")])
    assert code == 0
    assert (tmp_path / "checkpoints" / "faces_SimpleNet_Adam.pt").is_file()


def test_demo_media_builds_a_dataset(tmp_path):
    """The README's worked example, small: drawn photos and videos -> face crops in every split."""
    demo_media.write_media(tmp_path / "raw", photos=6, videos=2, frames=6, seed=0)
    assert len(list((tmp_path / "raw" / "fake").glob("*.mp4"))) == 2
    rows = build.build(tmp_path / "raw" / "real", tmp_path / "raw" / "fake", tmp_path / "out", frames=3,
                       ratios=(0.6, 0.2, 0.2), progress=False)
    assert len({row["source"] for row in rows}) == 16
    assert sum(row["status"] == "ok" for row in rows) > 10


def test_a_full_disk_under_the_crops_is_one_line_naming_the_crop(tmp_path, small_filesystems, capsys):
    for label in ("real", "fake"):
        (tmp_path / "raw" / label).mkdir(parents=True)
        for index in range(2):
            astronaut_scene((60 * index, 30 * index), fake=label == "fake").save(tmp_path / "raw" / label / f"{index}.png")
    folder = small_filesystems.mount("out", size_kib=128)  # room for one crop or so
    code = build_faces_dataset.main(["--real", str(tmp_path / "raw" / "real"), "--fake", str(tmp_path / "raw" / "fake"),
                       "-o", str(folder / "faces"), "--no-progress"])
    error = capsys.readouterr().err
    assert code == 1 and error.count("\n") == 1, error
    staging = folder / "faces" / build.NEW_BUILD / build.STAGING
    assert error.startswith(f"error: {staging}/") and ".png: disk full writing it (" in error
    assert f"free on {folder}); free some space and run the command again" in error
    assert not list(folder.rglob("*.tmp"))


def test_as_crops_keeps_each_photo_whole_with_the_landmarks_of_its_face(tmp_path):
    """Face crops made elsewhere (DFDC's): kept whole, squared about their centre, with their face's landmarks."""
    real = tmp_path / "crops"
    real.mkdir()
    photo = Image.fromarray(skimage_data.astronaut()).crop((130, 20, 320, 230))  # 190 x 210, the face filling it
    for index in range(4):
        photo.save(real / f"crop_{index}.png")
    Image.new("RGB", (200, 200), (128, 128, 128)).save(real / "blank.png")
    out = tmp_path / "faces"
    code = build_faces_dataset.main(["--real", str(real), "-o", str(out), "--as-crops", "--ratios", "0.5", "0.5", "0",
                       "--no-progress", "--workers", "1"])
    assert code == 0  # no --fake: a real-only dataset, and its empty test split is no error at ratio 0
    rows = read_manifest(out)
    kept = [row for row in rows if row["status"] == "ok"]
    assert len(kept) == 4 and [row["status"] for row in rows if row not in kept] == ["no face"]
    crop = np.asarray(Image.open(out / kept[0]["image"]))
    assert crop.shape == (256, 256, 3)
    square = Image.new("RGB", (210, 210))  # squared about the centre: 10 black columns on each side
    square.paste(photo, (10, 0))
    expected = np.asarray(square.resize((256, 256), Image.BILINEAR))
    assert crop[:, :12].max() == 0 and crop[:, -12:].max() == 0
    assert np.abs(crop.astype(int) - expected).max() <= 1
    split = kept[0]["split"]
    landmarks = folders.load_landmarks(out / split)[kept[0]["image"].split("/", 1)[1]]
    assert 40 < landmarks[:, 0].mean() < 216 and 40 < landmarks[:, 1].mean() < 216  # the face, in crop pixels
    assert not (out / split / "fake").exists() or not any((out / split / "fake").iterdir())


def test_as_crops_cannot_be_aligned(tmp_path, capsys):
    (tmp_path / "real").mkdir()
    Image.new("RGB", (64, 64)).save(tmp_path / "real" / "a.png")
    with pytest.raises(SystemExit) as exit_info:
        build_faces_dataset.main(["--real", str(tmp_path / "real"), "-o", str(tmp_path / "out"), "--as-crops", "--align"])
    assert exit_info.value.code == 2 and "--as-crops keeps each photo whole" in capsys.readouterr().err
