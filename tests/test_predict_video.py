"""predict.py on videos: frames, face track, the video's P(fake) from the mean frame log-odds, per-frame rows,
contact sheets."""
import csv
import json

import numpy as np
import pytest
import torch
from PIL import Image

from fakedetect.cli import predict
from fakedetect.data import demo_media
from fakedetect.faces.detection import FaceCropper
from fakedetect.faces.video import video_frames
from fakedetect.models.registry import load_trained_model
from fakedetect.serve import predict as serve_predict


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    """clips/: two drawn-face videos (6 frames each, face drifting, all found by dlib) and blank.mp4 (no face)."""
    folder = tmp_path_factory.mktemp("videos") / "clips"
    demo_media.write_media(folder.parent / "media", photos=0, videos=1, frames=6, seed=0)
    folder.mkdir()
    for label in ("real", "fake"):
        (folder.parent / "media" / label / "video_000.mp4").rename(folder / f"{label}_clip.mp4")
    demo_media.write_video(folder / "blank.mp4", [Image.new("RGB", demo_media.CANVAS, (120, 120, 120))] * 3)
    return folder


def run_cli(capsys, *argv):
    code = predict.main([str(arg) for arg in argv] + ["--device", "cpu", "--no-progress"])
    return code, capsys.readouterr()


class Sharpened(torch.nn.Module):
    """The trained model with its logits times ``factor``: frame probabilities far apart, so that the mean of the
    log-odds and the mean of the probabilities differ."""

    def __init__(self, model, factor):
        super().__init__()
        self.model, self.factor = model, factor

    def forward(self, images):
        return self.model(images) * self.factor


def test_video_probability_is_the_sigmoid_of_the_mean_frame_log_odds(tiny_run, videos):
    model, checkpoint = load_trained_model(tiny_run["best"])
    members = [(Sharpened(model, 300), checkpoint["normalization"])]
    cropper = FaceCropper()
    video, frames = serve_predict.predict_video(members, videos / "fake_clip.mp4", 0.5, cropper, frames=4)
    crops = [np.asarray(cropper.face(rgb).crop).transpose(2, 0, 1) for _, rgb in video_frames(videos / "fake_clip.mp4", 4)]
    log_odds = serve_predict.fake_log_odds(members[0][0], torch.from_numpy(np.stack(crops)), checkpoint["normalization"],
                                     "cpu").numpy().astype(np.float64)
    probabilities = 1 / (1 + np.exp(-log_odds))
    assert [row["frame"] for row in frames] == [0, 2, 3, 5] and video["frame"] is None and video["frames"] == 4
    np.testing.assert_allclose([row["fake_probability"] for row in frames], probabilities, rtol=1e-4)
    video_log_odds = np.log(video["fake_probability"] / (1 - video["fake_probability"]))
    assert video_log_odds == pytest.approx(log_odds.mean(), abs=1e-4)
    assert abs(video_log_odds - np.log(probabilities.mean() / (1 - probabilities.mean()))) > 0.05  # not the mean P
    assert video["max_frame_probability"] == pytest.approx(probabilities.max(), rel=1e-4)


def test_per_frame_rows_follow_their_video(tiny_run, videos, tmp_path, capsys):
    code, output = run_cli(capsys, tiny_run["best"], videos / "fake_clip.mp4", "--frames", "4", "--per-frame",
                           "--json", tmp_path / "out.json")
    assert code == 0
    video, *frames = json.loads((tmp_path / "out.json").read_text())["results"]
    assert video["frames"] == 4 and [row["frame"] for row in frames] == [0, 2, 3, 5]
    assert all(row["file"] == video["file"] and row["face_box"] for row in frames)
    assert "4 frames, most fake" in output.out and "1 scored" in output.out


def test_a_folder_of_videos_gives_one_row_each_and_blank_video_fails(tiny_run, videos, tmp_path, capsys):
    code, output = run_cli(capsys, tiny_run["best"], videos, "--frames", "3", "--csv", tmp_path / "out.csv")
    assert code == 1  # blank.mp4 has no face
    with open(tmp_path / "out.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == list(serve_predict.CSV_FIELDS)
    assert [row["file"] for row in rows] == [str(videos / name) for name in ("blank.mp4", "fake_clip.mp4", "real_clip.mp4")]
    assert rows[0]["error"] == "no face found in any of 3 frames" and rows[0]["fake_probability"] == ""
    assert [row["frames"] for row in rows[1:]] == ["3", "3"] and all(row["frame"] == "" for row in rows)
    assert "2 scored" in output.out and "1 failed" in output.out


def test_fps_picks_the_frames_of_a_video(tiny_run, videos, tmp_path, capsys):
    run_cli(capsys, tiny_run["best"], videos / "real_clip.mp4", "--fps", "5", "--per-frame", "--json", tmp_path / "o.json")
    _, *frames = json.loads((tmp_path / "o.json").read_text())["results"]
    assert [row["frame"] for row in frames] == [0, 2, 4]  # demo_media writes 10 frames a second


def test_cam_writes_a_contact_sheet_per_video(tiny_run, videos, tmp_path, capsys):
    pytest.importorskip("pytorch_grad_cam")
    code, _ = run_cli(capsys, tiny_run["best"], videos / "real_clip.mp4", videos / "fake_clip.mp4", "--frames", "5",
                      "--cam", tmp_path / "cams", "--json", tmp_path / "out.json")
    assert code == 0
    results = json.loads((tmp_path / "out.json").read_text())["results"]
    assert sorted(path.name for path in (tmp_path / "cams").iterdir()) == ["0000_real_clip_sheet.png",
                                                                           "0001_fake_clip_sheet.png"]
    assert results[0]["cam"] == str(tmp_path / "cams" / "0000_real_clip_sheet.png")
    sheet = Image.open(results[0]["cam"])
    assert sheet.size == (4 * 256, 2 * 256)  # 5 frames, 4 a row
    assert np.asarray(sheet)[256:, 256:].max() == 0  # the grid's empty places stay black
