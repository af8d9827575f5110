"""build_faces_dataset.py on videos: frames by --fps, a face track per video, --workers, --group-by pair, --groups."""
import csv
from collections import defaultdict

import numpy as np
import pytest
from PIL import Image

from fakedetect.cli import build_faces_dataset
from fakedetect.data import demo_media
from fakedetect.faces import build, video
from fakedetect.faces.detection import face_track


def read_manifest(out):
    with open(out / "manifest.csv", newline="") as f:
        return list(csv.DictReader(f))


def drawn_video(path, label, index, frames=4):
    """A demo_media-style video: one drawn face (real or fake) drifting across the frame."""
    rng = np.random.default_rng([0, label == "fake", index])  # seed 0: dlib finds every face
    face, (side, background) = demo_media.draw_face(label, rng), demo_media.layout(rng)
    start, end = rng.uniform(0, 1, 2), rng.uniform(0, 1, 2)
    demo_media.write_video(path, [demo_media.place(face, side, background, start + step * (end - start))
                                  for step in np.linspace(0, 1, frames)])


@pytest.fixture(scope="module")
def pair_named(tmp_path_factory):
    """FaceForensics++-style names: originals 000-003 in real/, fakes 000_001 and 002_003 in fake/."""
    root = tmp_path_factory.mktemp("pairs")
    for label, names in (("real", ("000", "001", "002", "003")), ("fake", ("000_001", "002_003"))):
        (root / label).mkdir()
        for index, name in enumerate(names):
            drawn_video(root / label / f"{name}.mp4", label, index)
    return root


def test_pair_groups_join_ids_transitively():
    groups = build.pair_groups(["000", "001", "000_001", "002_003", "003", "004", "003_005", "006"])
    assert groups["000"] == groups["001"] == groups["000_001"] == "pair/000"
    assert groups["002_003"] == groups["003"] == groups["003_005"] == "pair/002"  # 005 joins through 003
    assert len({groups["000"], groups["002_003"], groups["004"], groups["006"]}) == 4


@pytest.mark.parametrize("seed", range(20))
def test_pair_grouping_never_splits_an_identity_group(seed):
    """Whatever the seed, every original, its fakes and the fakes of its partner land in one split."""
    rng = np.random.default_rng(seed)
    ids = [f"{i:03d}" for i in range(30)]
    partners = rng.permutation(ids).reshape(-1, 2)
    stems = ids + [f"{a}_{b}" for a, b in partners] + [f"{b}_{a}" for a, b in partners[::2]]
    groups = build.pair_groups(stems)
    labels = {group: set() for group in groups.values()}
    for stem in stems:
        labels[groups[stem]].add("fake" if "_" in stem else "real")
    splits = build.assign_splits(labels, (0.6, 0.2, 0.2), seed)
    split_of_id = defaultdict(set)
    for stem in stems:
        for identity in stem.split("_"):
            split_of_id[identity].add(splits[groups[stem]])
    assert all(len(where) == 1 for where in split_of_id.values())
    assert len({split for where in split_of_id.values() for split in where}) == 3


def test_group_by_pair_keeps_originals_with_their_fakes(pair_named, tmp_path):
    rows = build.build(pair_named / "real", pair_named / "fake", tmp_path / "out", frames=2, ratios=(0.5, 0.5, 0),
                       group_by="pair", progress=False)
    split_of = {}
    for row in rows:
        if row["status"] == "ok":
            split_of.setdefault(row["video"].split("/")[1].removesuffix(".mp4"), set()).add(row["split"])
    assert len(split_of) == 6
    assert split_of["000"] == split_of["001"] == split_of["000_001"]
    assert split_of["002"] == split_of["003"] == split_of["002_003"]
    assert split_of["000"] != split_of["002"] and all(len(where) == 1 for where in split_of.values())
    assert {row["group"] for row in rows} == {"pair/000", "pair/002"}


def test_groups_csv_names_the_group_of_listed_files(pair_named, tmp_path, capsys):
    groups = tmp_path / "groups.csv"
    groups.write_text("file,group\n000.mp4,a\nreal/ignored.mp4,b\n")
    out = tmp_path / "out"
    argv = ["--real", str(pair_named / "real"), "--fake", str(pair_named / "fake"), "-o", str(out), "--frames", "1",
            "--groups", str(groups), "--workers", "1", "--no-progress"]
    assert build_faces_dataset.main(argv) == 2 and not out.exists()  # real/ignored.mp4 names no source
    assert "1 file(s) not found" in capsys.readouterr().err
    groups.write_text("file,group\n000.mp4,a\n002_003.mp4,a\n")
    build_faces_dataset.main(argv)
    rows = read_manifest(out)
    group_of = {row["video"]: row["group"] for row in rows}
    assert group_of["real/000.mp4"] == group_of["fake/002_003.mp4"] == "listed/a"
    assert group_of["real/001.mp4"] == "real/001.mp4"  # not listed: --group-by file
    assert len({row["split"] for row in rows if row["group"] == "listed/a"}) == 1


@pytest.mark.slow  # two spawned processes import torch: half a minute on a busy machine
def test_one_and_two_workers_give_identical_datasets(pair_named, tmp_path):
    for workers in (1, 2):
        assert build_faces_dataset.main(["--real", str(pair_named / "real"), "--fake", str(pair_named / "fake"),
                           "-o", str(tmp_path / f"w{workers}"), "--frames", "3", "--ratios", "0.5", "0.5", "0",
                           "--group-by", "pair", "--workers", str(workers), "--no-progress"]) in (0, 1)
    one, two = (tmp_path / "w1" / "manifest.csv").read_bytes(), (tmp_path / "w2" / "manifest.csv").read_bytes()
    assert one == two and len(read_manifest(tmp_path / "w1")) == 18
    for row in read_manifest(tmp_path / "w1"):
        if row["status"] == "ok":
            assert (tmp_path / "w1" / row["image"]).read_bytes() == (tmp_path / "w2" / row["image"]).read_bytes()


def test_fps_takes_frames_at_that_rate(tmp_path):
    assert video.frame_indices_at_fps(100, 25, 5) == list(range(0, 100, 5))
    assert video.frame_indices_at_fps(10, 10, 30) == list(range(10))  # faster than the video: every frame
    drawn_video(tmp_path / "clip.mp4", "real", 0, frames=20)  # demo_media writes 10 frames a second
    assert [index for index, _ in video.video_frames(tmp_path / "clip.mp4", 3, fps=2.5)] == [0, 4, 8, 12, 16]


def box(x, y, side):
    return (x, y, side, side), None


def test_the_video_face_is_the_track_seen_in_the_most_frames():
    speaker = [box(100, 100, 80), box(110, 104, 82), None, box(230, 120, 80)]  # missed in frame 2, then moved 1.5 sides
    passer_by = [None, box(300, 50, 140), box(310, 50, 140), None]  # bigger, in two frames
    speck = [box(10, 10, 40), None, None, None]  # a false detection
    frames = [[face for face in faces if face] for faces in zip(speck, speaker, passer_by)]
    assert face_track(frames) == speaker
    assert face_track([[]] * 3) == [None] * 3
    jumped = [[box(0, 0, 40)], [box(0, 0, 40)], [box(130, 0, 40)]]  # 3.25 sides away: another face
    assert face_track(jumped) == [box(0, 0, 40), box(0, 0, 40), None]


def test_a_video_crops_the_tracked_face(tmp_path):
    """A bigger face that enters in the second frame does not replace the first one."""
    rng = np.random.default_rng(0)  # seed 0: dlib finds both faces
    small, big = (demo_media.draw_face("real", rng) for _ in range(2))
    frames = []
    for step in range(3):
        canvas = demo_media.place(small, 150, (90, 90, 90), (0.05, 0.5))
        if step:
            canvas.paste(Image.fromarray(big).resize((200, 200)), (270, 20))
        frames.append(canvas)
    folder = tmp_path / "real"
    folder.mkdir()
    demo_media.write_video(folder / "clip.mp4", frames)
    cropper = build_faces_dataset.FaceCropper()
    rows = build.crop_source(folder / "clip.mp4", cropper, 3)
    assert [row["status"] for row in rows] == ["ok"] * 3
    assert all(row["face_box"][0] < 200 for row in rows)  # the small face on the left, every frame
    assert max(face[0][2] for face in cropper.faces(np.asarray(frames[1]))) > 1.2 * rows[1]["face_box"][2]
