"""tools/method_views.py: a dataset built from several manipulation methods, seen with some methods only."""
import csv
import json

import pytest

from fakedetect.analysis.numbers import video_ids
from fakedetect.data.folders import FacesDataset
from fakedetect.faces import build

import method_views  # a maintainer script (tools/, on pytest.ini's pythonpath)
from test_video_build import drawn_video


@pytest.fixture(scope="module")
def two_methods(tmp_path_factory):
    """A build of 4 real videos and 4 fakes, 2 in fake/A/ and 2 in fake/B/, 3 frames each."""
    root = tmp_path_factory.mktemp("methods")
    (root / "raw" / "real").mkdir(parents=True)
    for index in range(4):
        drawn_video(root / "raw" / "real" / f"clip_{index}.mp4", "real", index)
        method = root / "raw" / "fake" / "AB"[index % 2]
        method.mkdir(parents=True, exist_ok=True)
        drawn_video(method / f"clip_{index}.mp4", "fake", index)
    build.build(root / "raw" / "real", root / "raw" / "fake", root / "faces", frames=3, ratios=(0.5, 0.25, 0.25),
                progress=False)
    return root / "faces"


def fake_videos(folder, split):
    return sorted({video for video, label in zip(video_ids(FacesDataset(folder / split, require_both_classes=False)),
                                                 FacesDataset(folder / split, require_both_classes=False).labels)
                   if label == 1})


def test_a_view_keeps_every_real_crop_and_the_chosen_methods_fakes(two_methods, tmp_path, capsys):
    view = tmp_path / "view"
    assert method_views.main([str(two_methods), "--methods", "A", "--test-methods", "B", "-o", str(view)]) == 0
    for split in ("train", "val", "test"):
        built, seen = FacesDataset(two_methods / split), FacesDataset(view / split, require_both_classes=False)
        assert [p.name for p, label in zip(seen.files, seen.labels) if label == 0] == \
            [p.name for p, label in zip(built.files, built.labels) if label == 0]
        method = "B" if split == "test" else "A"
        assert all(video.startswith(f"fake/{method}/") for video in fake_videos(view, split))
        assert fake_videos(view, split) == [video for video in fake_videos(two_methods, split)
                                            if video.startswith(f"fake/{method}/")]
    kept, built = ([video for split in ("train", "val", "test") for video in fake_videos(folder, split)]
                   for folder in (view, two_methods))
    assert kept and len(kept) < len(built)  # some fakes kept, some left out
    with open(view / "manifest.csv", newline="") as f:
        listed = {row["image"] for row in csv.DictReader(f)}
    assert listed == {path.relative_to(view).as_posix() for path in view.glob("*/*/*.png")}
    if (two_methods / "train" / "landmarks.json").is_file():
        assert json.loads((view / "train" / "landmarks.json").read_text()) == \
            json.loads((two_methods / "train" / "landmarks.json").read_text())
    assert "test: " in capsys.readouterr().out


def test_an_unknown_method_or_an_existing_output_is_one_line(two_methods, tmp_path, capsys):
    with pytest.raises(SystemExit) as code:
        method_views.main([str(two_methods), "--methods", "C", "-o", str(tmp_path / "view")])
    assert code.value.code == 2
    assert "no fakes of C (its methods: A, B)" in capsys.readouterr().err and not (tmp_path / "view").exists()
    (tmp_path / "taken").mkdir()
    with pytest.raises(SystemExit):
        method_views.main([str(two_methods), "--methods", "A", "-o", str(tmp_path / "taken")])
    assert "-o " in capsys.readouterr().err and list((tmp_path / "taken").iterdir()) == []
