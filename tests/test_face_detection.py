"""face_detection.py: dlib's detector and 68 landmarks (default), the Haar fallback, --align, landmarks per crop."""
import csv
import json
import sys

import numpy as np
import pytest
from PIL import Image, ImageFilter

from fakedetect.cli import build_faces_dataset
from fakedetect.data import demo_media
from fakedetect.data.folders import load_landmarks
from fakedetect.data.images import DatasetError
from fakedetect.faces import detection, video
from fakedetect.faces.detection import DlibDetector, FaceCropper, FaceDetectorError, HaarDetector, eye_line

skimage_data = pytest.importorskip("skimage.data")
DLIB_MISSING = detection.default_detector()[1]
needs_dlib = pytest.mark.skipif(DLIB_MISSING is not None, reason=f"dlib detector unavailable ({DLIB_MISSING})")
EYES, MOUTH = slice(36, 48), slice(48, 68)


def inside_crop(points, size=256):
    """Every landmark in the crop, give or take two source pixels: dlib's box enlarged 1.3x puts the chin on the
    bottom edge, and dlib's landmarks are whole source pixels, 4.5 crop pixels each for these 45-pixel faces."""
    return bool(((points > -10) & (points < size + 10)).all())


def astronaut_scene(offset=(100, 40), degrees=0.0, canvas=(480, 360)):
    """The astronaut photo at 256x256 (her face about 47 pixels wide), turned by ``degrees``, on a plain canvas."""
    photo = Image.fromarray(skimage_data.astronaut()).resize((256, 256)).rotate(degrees, resample=Image.BILINEAR)
    scene = Image.new("RGB", canvas, (70, 110, 140))
    scene.paste(photo, offset)
    return np.asarray(scene)


def redetected_landmarks(crop, detector):
    """The landmarks dlib finds in a crop pasted on a larger canvas, in the crop's own pixels."""
    canvas = Image.new("RGB", (512, 512), (128, 128, 128))
    canvas.paste(crop, (128, 128))
    faces = detector.faces(np.asarray(canvas), 32)
    assert faces, "no face found again in the crop"
    return max(faces, key=lambda face: face[0][2])[1] - 128


@pytest.fixture(scope="module")
def dlib_detector():
    return DlibDetector(haar_fallback=False)


@pytest.fixture(scope="module")
def drawn_images(tmp_path_factory):
    """Every photo and 3 frames of every video of demo_media's drawn faces (both classes)."""
    raw = demo_media.write_media(tmp_path_factory.mktemp("raw"), photos=6, videos=2, frames=6, seed=0)
    images = []
    for path in video.list_sources(raw):
        is_video = path.suffix in video.VIDEO_EXTENSIONS
        images += [rgb for _, rgb in video.video_frames(path, 3)] if is_video else [detection.read_photo(path)]
    return images


@needs_dlib
def test_dlib_finds_at_least_as_many_drawn_faces_as_haar(drawn_images, dlib_detector):
    haar = HaarDetector()
    found = {name: sum(bool(detector.faces(rgb, 32)) for rgb in drawn_images)
             for name, detector in (("haar", haar), ("dlib", dlib_detector), ("default", FaceCropper().detector))}
    assert len(drawn_images) == 24
    assert found["dlib"] >= found["haar"] and found["default"] >= found["dlib"], found
    assert found["default"] >= 22, found


@needs_dlib
def test_landmarks_are_stored_in_crop_pixels(dlib_detector):
    offset = (150, 60)
    face = FaceCropper(detector="dlib").face(astronaut_scene(offset))
    assert face.crop.size == (256, 256) and face.landmarks.shape == (68, 2) and face.angle == 0
    assert inside_crop(face.landmarks)
    assert face.landmarks[EYES, 1].mean() < face.landmarks[MOUTH, 1].mean() - 40  # eyes above the mouth
    again = redetected_landmarks(face.crop, dlib_detector)
    assert np.abs(again - face.landmarks).mean() < 4  # the same points, found afresh in the crop itself
    x, y, w, h = face.box
    assert abs(x + w / 2 - (offset[0] + 112)) < 8 and abs(y + h / 2 - (offset[1] + 62)) < 10


@needs_dlib
def test_align_levels_the_eyes(dlib_detector):
    scene = astronaut_scene(degrees=12)  # the photo's own tilt is about 3 degrees the other way
    plain = FaceCropper(detector="dlib").face(scene)
    aligned = FaceCropper(detector="dlib", align=True).face(scene)
    assert abs(eye_line(redetected_landmarks(plain.crop, dlib_detector))[2]) > 6
    assert abs(eye_line(redetected_landmarks(aligned.crop, dlib_detector))[2]) < 2
    assert abs(eye_line(aligned.landmarks)[2]) < 0.1 and 6 < abs(aligned.angle) < 12
    again = redetected_landmarks(aligned.crop, dlib_detector)
    assert np.abs(again - aligned.landmarks).mean() < 4  # stored landmarks follow the rotation


@needs_dlib
def test_haar_fallback_inside_dlib_finds_what_hog_misses():
    scene = Image.fromarray(astronaut_scene())
    face_box = (100 + 80, 40 + 25, 100 + 145, 40 + 95)
    scene.paste(scene.crop(face_box).filter(ImageFilter.GaussianBlur(3)), face_box[:2])  # a blurred face
    rgb = np.asarray(scene)
    assert DlibDetector(haar_fallback=False).faces(rgb, 32) == [] and HaarDetector().faces(rgb, 32)
    face = FaceCropper(detector="dlib").face(rgb)
    assert face is not None and face.landmarks.shape == (68, 2)
    assert face.landmarks[EYES, 1].mean() < face.landmarks[MOUTH, 1].mean()


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    root = tmp_path_factory.mktemp("sources")
    for label in ("real", "fake"):
        (root / label).mkdir()
        for index, offset in enumerate([(0, 0), (200, 90), (100, 40), (220, 0)]):
            Image.fromarray(astronaut_scene(offset, degrees=5 * (index - 1.5))).save(root / label / f"p{index}.png")
        frames = [Image.fromarray(astronaut_scene((20 * i, 10))) for i in range(4)]
        demo_media.write_video(root / label / "clip.mp4", frames)
    return root


def run_build(sources, out, *flags):
    code = build_faces_dataset.main(["--real", str(sources / "real"), "--fake", str(sources / "fake"), "-o", str(out),
                       "--frames", "2", "--ratios", "0.5", "0.25", "0.25", "--no-progress", *flags])
    with open(out / "manifest.csv", newline="") as f:
        return code, list(csv.DictReader(f))


@needs_dlib
def test_build_stores_the_landmarks_of_every_crop(sources, tmp_path):
    code, rows = run_build(sources, tmp_path / "out", "--align")
    crops = [row for row in rows if row["status"] == "ok"]
    assert code == 0 and len(crops) == 12 and {row["detector"] for row in crops} == {"dlib"}
    assert all(abs(float(row["angle"])) < 12 for row in crops) and max(abs(float(row["angle"])) for row in crops) > 5
    for split in build_faces_dataset.SPLITS:
        landmarks = load_landmarks(tmp_path / "out" / split)
        in_split = sorted(row["image"].split("/", 1)[1] for row in crops if row["split"] == split)
        assert sorted(landmarks) == in_split
        for image, points in landmarks.items():
            assert points.shape == (68, 2) and inside_crop(points)
            assert abs(eye_line(points)[2]) < 0.5, image  # aligned: eyes level in every stored crop


def test_haar_detector_still_builds_without_landmarks(sources, tmp_path):
    code, rows = run_build(sources, tmp_path / "out", "--detector", "haar")
    crops = [row for row in rows if row["status"] == "ok"]
    assert code == 0 and len(crops) >= 10 and {row["detector"] for row in crops} == {"haar"}
    assert all(row["angle"] == "" for row in crops)
    assert not list((tmp_path / "out").glob("*/landmarks.json"))
    assert FaceCropper(detector="haar").face(astronaut_scene()).landmarks is None


def test_align_needs_the_dlib_detector(sources, tmp_path, capsys):
    assert build_faces_dataset.main(["--real", str(sources / "real"), "--fake", str(sources / "fake"), "-o", str(tmp_path / "out"),
                       "--detector", "haar", "--align", "--no-progress"]) == 2
    assert "--align" in capsys.readouterr().err and not (tmp_path / "out" / "manifest.csv").exists()


def test_without_dlib_the_default_falls_back_to_haar_with_a_note(sources, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "dlib", None)  # import dlib now raises ImportError
    cropper = FaceCropper()
    assert cropper.name == "haar" and "dlib is not installed" in cropper.note and "dlib-bin" in cropper.note
    with pytest.raises(FaceDetectorError, match="dlib-bin"):
        FaceCropper(detector="dlib")
    code, rows = run_build(sources, tmp_path / "out")
    assert code == 0 and {row["detector"] for row in rows} == {"haar"}
    assert capsys.readouterr().err.count("note: dlib is not installed") == 1


def test_load_landmarks_names_the_file_and_the_fix(tmp_path):
    with pytest.raises(DatasetError, match="landmarks.json: not found; rebuild"):
        load_landmarks(tmp_path)
    (tmp_path / "landmarks.json").write_text(json.dumps({"real/a.png": [[1, 2]] * 68}))
    assert load_landmarks(tmp_path)["real/a.png"].shape == (68, 2)
    (tmp_path / "landmarks.json").write_text(json.dumps({"real/a.png": [[1, 2]] * 5}))
    with pytest.raises(DatasetError, match="real/a.png has landmarks of shape"):
        load_landmarks(tmp_path)
    (tmp_path / "landmarks.json").write_text("{not json")
    with pytest.raises(DatasetError, match="not a landmarks file"):
        load_landmarks(tmp_path)
