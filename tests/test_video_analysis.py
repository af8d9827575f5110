"""Video-level metrics beside frame-level: crops pooled by their source video (the build manifest's video column)."""
import json
import shutil

import pytest

from fakedetect.analysis import numbers
from fakedetect.cli import cross_dataset, numerical_analysis
from fakedetect.cli import train as train_main
from fakedetect.data.folders import FacesDataset
from fakedetect.faces import build
from fakedetect.metrics import binary_metrics, mean_in_log_odds, per_video
from fakedetect.models.registry import load_trained_model

from test_video_build import drawn_video


@pytest.fixture(scope="module")
def built_videos(tmp_path_factory):
    """A dataset built from 4 real and 4 fake drawn videos, 3 frames each: 2 + 1 + 1 videos per class and split."""
    root = tmp_path_factory.mktemp("video_data")
    for label in ("real", "fake"):
        (root / "raw" / label).mkdir(parents=True)
        for index in range(4):
            drawn_video(root / "raw" / label / f"clip_{index}.mp4", label, index)
    build.build(root / "raw" / "real", root / "raw" / "fake", root / "faces", frames=3, ratios=(0.5, 0.25, 0.25),
                progress=False)
    return root / "faces"


def test_video_ids_come_from_the_manifest(built_videos):
    test = FacesDataset(built_videos / "test")
    videos = numbers.video_ids(test)
    assert len(videos) == len(test.files) == 6
    assert [video.split("/")[0] for video in videos] == ["real"] * 3 + ["fake"] * 3
    assert len(set(videos)) == 2
    for file, video in zip(test.files, videos):  # clip_1_f000002.png is frame 2 of clip_1.mp4
        assert file.name.rsplit("_f", 1)[0] == video.split("/")[1].removesuffix(".mp4")


def test_no_video_ids_without_a_manifest_video_column(built_videos, tiny_fakes, tmp_path):
    assert numbers.video_ids(FacesDataset(tiny_fakes / "test")) is None  # no manifest
    shutil.copytree(built_videos / "test", tmp_path / "old" / "test")
    lines = (built_videos / "manifest.csv").read_text().splitlines()
    (tmp_path / "old" / "manifest.csv").write_text("\n".join(",".join(line.split(",")[:3]) for line in lines))
    assert numbers.video_ids(FacesDataset(tmp_path / "old" / "test")) is None  # a build without videos


def test_videos_pool_the_mean_log_odds_of_their_crops():
    labels = [0, 0, 0, 0, 1, 1, 1, 1]
    scores = [0.1, 0.7, 0.2, 0.3, 0.6, 0.4, 0.9, 0.8]  # frames misordered: frame AUC < 1
    videos = ["r/a", "r/a", "r/b", "r/b", "f/c", "f/c", "f/d", "f/d"]
    video_labels, video_scores, ids = per_video(labels, scores, videos)
    assert ids == ["f/c", "f/d", "r/a", "r/b"] and video_labels.tolist() == [1, 1, 0, 0]
    assert video_scores[0] == pytest.approx(float(mean_in_log_odds([0.6, 0.4])))
    assert video_scores[2] == pytest.approx(float(mean_in_log_odds([0.1, 0.7])))
    assert binary_metrics(labels, scores)["auc"] < 1
    assert numbers.video_metrics(labels, scores, videos, 0.5)["auc"] == 1.0
    assert per_video(labels, scores, [None] * 4 + videos[4:])[2] == ["f/c", "f/d"]  # a crop of no video is left out


@pytest.fixture(scope="module")
def video_run(built_videos, tmp_path_factory):
    """The flags of a one-epoch SimpleNet run on the built dataset (trained once for this module)."""
    work = tmp_path_factory.mktemp("video_run")
    flags = ["-m", "SimpleNet", "-d", str(built_videos), "-o", "Adam", "--out-dir", str(work / "out"),
             "--checkpoint-dir", str(work / "checkpoints")]
    assert train_main.main(flags + ["-b", "8", "-e", "1", "--device", "cpu", "--cache-dir", str(work / "cache")]) == 0
    return flags, work


@pytest.mark.slow  # trains one epoch on the built dataset
def test_numerical_analysis_reports_video_auc_beside_frame_auc(built_videos, video_run, tmp_path, capsys):
    flags, work = video_run
    capsys.readouterr()
    assert numerical_analysis.main(flags + ["--figures-dir", str(tmp_path / "figures"), "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "frame level and video level" in out and "6 crops of 2 videos" in out
    metrics = json.loads((tmp_path / "figures" / "faces_SimpleNet_Adam_metrics.json").read_text())
    video = metrics["video_level"]
    assert video["videos"] == 2 and video["count"] == 2 and metrics["count"] == 6
    test = FacesDataset(built_videos / "test")
    model, checkpoint = load_trained_model(work / "checkpoints" / "faces_SimpleNet_Adam.pt")
    _, fake, labels = numbers.get_soft_scores_and_true_labels(test, model, checkpoint["normalization"])
    expected = binary_metrics(*per_video(labels, fake, numbers.video_ids(test))[:2], metrics["threshold"])
    assert video["accuracy"] == expected["accuracy"] and video["confusion_matrix"] == expected["confusion_matrix"]


@pytest.mark.slow  # shares the one-epoch run
def test_the_cross_dataset_table_has_video_level_columns_where_there_are_videos(built_videos, video_run, tiny_fakes,
                                                                                tmp_path):
    flags, _ = video_run
    figures = ["--figures-dir", str(tmp_path), "--device", "cpu"]
    assert cross_dataset.main(flags + figures + ["--eval-dataset", str(tiny_fakes)]) == 0
    table = (tmp_path / "faces_SimpleNet_Adam_cross_dataset.md").read_text().splitlines()
    assert table[0].endswith("| videos (real / fake) | video AUC | video EER |")
    assert table[2].startswith("| faces | in-domain | 6 (3 / 3) |") and "| 2 (1 / 1) |" in table[2]
    assert table[3].startswith("| tiny_fakes | cross-dataset |") and table[3].endswith("| no videos |  |  |")
    rows = json.loads((tmp_path / "faces_SimpleNet_Adam_cross_dataset.json").read_text())["results"]
    assert numerical_analysis.main(flags + figures) == 0
    alone = json.loads((tmp_path / "faces_SimpleNet_Adam_metrics.json").read_text())["video_level"]
    assert rows[0]["video_level"]["auc"] == alone["auc"] and rows[0]["video_level"]["eer"] == alone["eer"]
    assert "video_level" not in rows[1]
