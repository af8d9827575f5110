"""Explanation scores against self-blend masks: report.py --self-blend-scores, explanation_scores.self_blended_fakes."""
import json
import shutil
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from fakedetect.analysis import report as report_tables
from fakedetect.cli import report
from fakedetect.data import demo as demo_data
from fakedetect.data.folders import FacesDataset
from fakedetect.data.self_blend import self_blend
from fakedetect.explain.scores import explain_dataset, self_blended_fakes
from fakedetect.models.simplenet import SimpleNet

NORMALIZATION = ((0.5,) * 3, (0.5,) * 3)


@pytest.fixture(scope="module")
def landmarked(tiny_fakes, tmp_path_factory):
    """tiny_fakes with a test split whose real images are drawn faces, all but the last listed in its
    landmarks.json; returns (dataset folder, the listed images uint8 B x 3 x H x W, their landmarks)."""
    root = tmp_path_factory.mktemp("landmarked") / "landmarked"
    for split in ("train", "val", "test"):
        shutil.copytree(tiny_fakes / split, root / split)
    rng = np.random.default_rng(7)
    images, landmarks = [], {}
    for path in sorted((root / "test" / "real").iterdir()):
        person = demo_data.random_identity(rng)
        image = demo_data.to_uint8(demo_data.camera(demo_data.render_face(person), rng))
        Image.fromarray(image).save(path)
        images.append(image)
        landmarks[f"real/{path.name}"] = demo_data.face_landmarks(person).tolist()
    del landmarks[f"real/{path.name}"]  # an image without landmarks is not blended
    (root / "test" / "landmarks.json").write_text(json.dumps(landmarks))
    listed = torch.from_numpy(np.stack(images[:-1])).permute(0, 3, 1, 2).contiguous()
    return root, listed, torch.tensor(list(landmarks.values()), dtype=torch.float32)


def expected_blends(landmarked, seed):
    """The pseudo-fakes and half-peak masks self_blend.py makes of the listed images with ``seed``."""
    _, images, landmarks = landmarked
    fakes, weights, _ = self_blend(images, landmarks, torch.Generator().manual_seed(seed), mask="hull")
    return fakes, (weights >= weights.amax((1, 2, 3), keepdim=True) / 2)[:, 0].numpy()


def test_pseudo_fakes_are_the_listed_real_images_blended_with_the_seed(landmarked):
    root, images, _ = landmarked
    split = FacesDataset(root / "test")
    fakes, masks = self_blended_fakes(split, seed=3)
    assert fakes.files == split.real_image_files[:-1] and fakes.labels.tolist() == [1] * 5
    expected_fakes, expected_masks = expected_blends(landmarked, 3)
    assert torch.equal(fakes.images, expected_fakes) and not torch.equal(fakes.images, images)
    assert np.array_equal(masks, expected_masks) and 0.05 < masks.mean() < 0.8
    again, again_masks = self_blended_fakes(split, seed=3)
    assert torch.equal(again.images, fakes.images) and np.array_equal(again_masks, masks)
    other, other_masks = self_blended_fakes(split, seed=4)
    assert not torch.equal(other.images, fakes.images) and not np.array_equal(other_masks, masks)


def test_maps_are_scored_against_the_blend_masks(landmarked):
    root, _, _ = landmarked
    fakes, masks = self_blended_fakes(FacesDataset(root / "test"), seed=3)
    _, blend_masks = expected_blends(landmarked, 3)

    def scores(maps):
        position = 0

        def explain(images, labels):  # the map of each image of the batch, in dataset order
            nonlocal position
            position += len(labels)
            return maps[position - len(labels):position]
        return explain_dataset(fakes, explain, NORMALIZATION, "cpu", batch_size=2, masks=masks)["scores"]
    inside, outside = scores(blend_masks.astype(float)), scores((~blend_masks).astype(float))
    assert inside["map"] == [(1.0, 1.0)] * 5 and outside["map"] == [(0.0, 0.0)] * 5
    np.testing.assert_allclose([energy for energy, _ in inside["uniform baseline"]], blend_masks.mean((1, 2)))


def test_a_split_without_landmarks_is_one_note_naming_the_file_and_the_fix(tiny_fakes, capsys):
    args = SimpleNamespace(seed=0, device="cpu", batch_size=4)
    split = FacesDataset(tiny_fakes / "test")
    assert report_tables.blend_mask_table(SimpleNet(), NORMALIZATION, split, ["saliency"], args) is None
    output = capsys.readouterr().out
    assert output == (f"note: {tiny_fakes / 'test' / 'landmarks.json'} not found, so no pseudo-fakes to score against "
                      "blend masks; build the dataset with build_faces_dataset.py --detector dlib, which writes it\n")


@pytest.mark.slow
def test_report_writes_the_blend_mask_table_beside_the_mask_table(tiny_run, landmarked, tmp_path, capsys):
    root, _, _ = landmarked
    flags = ["-m", "SimpleNet", "-d", str(tiny_run["dataset"]), "-o", "Adam", "--out-dir", str(tiny_run["out_dir"]),
             "--checkpoint-dir", str(tiny_run["checkpoint_dir"]), "--figures-dir", str(tmp_path), "--device", "cpu",
             "-b", "8", "--eval-dataset", str(root), "--self-blend-scores", "--seed", "3"]
    assert report.main(flags) == 0
    output = capsys.readouterr().out
    prefix = "tiny_fakes_SimpleNet_Adam_on_landmarked"
    summary = json.loads((tmp_path / f"{prefix}_summary.json").read_text())
    table = summary["blend_mask_scores"]
    assert table == json.loads((tmp_path / f"{prefix}_blend_mask_scores.json").read_text())
    assert list(table) == ["saliency", "Grad-CAM", "centre baseline", "uniform baseline"]
    assert all(row["images"] == 5 for row in table.values())
    _, blend_masks = expected_blends(landmarked, 3)
    assert table["uniform baseline"]["energy_inside_mask"] == pytest.approx(blend_masks.mean())
    assert all(0 <= row["energy_inside_mask"] <= 1 and 0 <= row["pointing_game"] <= 1 for row in table.values())
    assert summary["explanation_scores"]["saliency"]["images"] == 6  # the split's own fakes, against masks/
    assert "explanations of 5 pseudo-fakes self-blended from the real images of landmarked/test (--seed 3" in output
