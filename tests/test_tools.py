"""The helper scripts' argument checks: demo_data.py, demo_media.py, bench.py."""
import numpy as np
import pytest

from fakedetect.cli import demo_data, demo_media
from fakedetect.data import demo_media as media

import bench


@pytest.mark.parametrize("main, flags, message", [
    (demo_data.main, ["--workers", "0"], "--workers must be >= 1"),
    (demo_media.main, ["--frames", "0"], "--frames must be >= 1"),
    (demo_media.main, ["--photos", "-1"], "--photos must be >= 0"),
    (bench.main, ["--data", "no_such_folder"], "no_such_folder: dataset folder not found"),
    (bench.main, ["--device", "gpu"], "--device gpu: not a device"),
])
def test_bad_arguments_exit_2_with_the_fix(tmp_path, capsys, main, flags, message):
    with pytest.raises(SystemExit) as exit_info:
        main(flags + ["--out" if main is not bench.main else "--json", str(tmp_path / "out")])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_a_video_that_cannot_be_written_is_a_one_line_error(tmp_path, monkeypatch, capsys):
    import cv2

    class Closed:
        def __init__(self, *args):
            pass

        def isOpened(self):
            return False
    monkeypatch.setattr(cv2, "VideoWriter", Closed)
    frame = media.place(media.draw_face("real", np.random.default_rng(0)), 100, (90, 90, 90), (0, 0))
    with pytest.raises(RuntimeError, match="clip.mp4: OpenCV cannot write mp4v video"):
        media.write_video(tmp_path / "clip.mp4", [frame])
    assert demo_media.main(["--out", str(tmp_path / "raw"), "--photos", "0", "--videos", "1", "--frames", "1"]) == 1
    assert "video_000.mp4: OpenCV cannot write mp4v video" in capsys.readouterr().err
