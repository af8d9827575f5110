import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fakedetect.analysis import self_blend_figure
from fakedetect.cli import plot_self_blend
from fakedetect.data import demo as demo_data
from fakedetect.data import self_blend
from fakedetect.data.augment import jpeg_roundtrip
from fakedetect.data.self_blend import EpochBlends, SelfBlendConfig, SelfBlender


def drawn_faces(count, seed=0):
    """``count`` drawn real faces (uint8 B x 3 x 256 x 256) and their 68 landmarks (B x 68 x 2)."""
    rng = np.random.default_rng(seed)
    images, landmarks = [], []
    for _ in range(count):
        person = demo_data.random_identity(rng)
        images.append(demo_data.to_uint8(demo_data.camera(demo_data.render_face(person), rng)))
        landmarks.append(demo_data.face_landmarks(person))
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous(), torch.from_numpy(np.stack(landmarks))


@pytest.fixture(scope="module")
def faces():
    return drawn_faces(6)


def blend(images, landmarks, seed=0, mask="hull", **changes):
    """Pseudo-fakes with the parameters drawn from ``seed``, some of them replaced by ``changes``."""
    blender = SelfBlender(SelfBlendConfig(mask=mask))
    params = blender.draw(len(images), torch.Generator().manual_seed(seed))
    for key, value in changes.items():
        params[key] = torch.as_tensor(value, dtype=params[key].dtype).expand_as(params[key]).clone()
    return blender(images, landmarks, params)


def hull_distance(landmarks, height, width):
    """Signed distance (B x H x W, pixels, positive inside) of every pixel to each landmark convex hull."""
    from scipy.spatial import ConvexHull
    rows, columns = torch.meshgrid(torch.arange(height, dtype=torch.float64), torch.arange(width, dtype=torch.float64),
                                   indexing="ij")
    distances = []
    for points in landmarks.double():
        equations = torch.from_numpy(ConvexHull(points.numpy()).equations)  # outward normal . p + offset <= 0 inside
        distances.append(-(columns[..., None] * equations[:, 0] + rows[..., None] * equations[:, 1]
                           + equations[:, 2]).amax(-1))
    return torch.stack(distances)


def test_demo_landmarks_sit_on_the_drawn_features():
    rng = np.random.default_rng(2)
    for _ in range(3):
        person = demo_data.random_identity(rng)
        image, points = demo_data.render_face(person), demo_data.face_landmarks(person)
        assert points.shape == (68, 2)
        for eye in (points[36:42], points[42:48]):  # the pupil is painted at the eye's centre
            x, y = eye.mean(0).round().astype(int)
            assert image[y, x].max() < 0.05
        x, y = points[60:68].mean(0).round().astype(int)
        assert np.allclose(image[y, x], person["lips"], atol=0.02)
        assert points[:17, 1].max() > points[48:, 1].max() > points[36:48, 1].max() > points[17:27, 1].max()


def test_pseudo_fake_keeps_size_and_dtype(faces):
    images, landmarks = faces
    fakes, masks, made = self_blend.self_blend(images, landmarks, torch.Generator().manual_seed(0))
    assert fakes.shape == images.shape and fakes.dtype == torch.uint8
    assert masks.shape == (len(images), 1, 256, 256) and masks.dtype == torch.float32
    assert made.tolist() == [True] * len(images)
    small = torch.nn.functional.interpolate(images.float(), size=(96, 128), mode="bilinear").round().to(torch.uint8)
    scaled = landmarks * torch.tensor([128 / 256, 96 / 256])
    fakes, masks, made = self_blend.self_blend(small, scaled, torch.Generator().manual_seed(0))
    assert fakes.shape == small.shape and fakes.dtype == torch.uint8 and masks.shape == (len(images), 1, 96, 128)
    assert made.all() and (fakes != small).any()


def test_only_pixels_inside_the_mask_change(faces):
    images, landmarks = faces
    blender = SelfBlender()
    params = blender.draw(len(images), torch.Generator().manual_seed(0))
    fakes, masks, _ = blender(images, landmarks, params)
    changed = (fakes != images).any(1, keepdim=True)
    assert changed.any()
    assert not (changed & (masks == 0)).any()
    # and the mask is the landmark hull dilated at most by how far each image's parameters move and feather it
    shift = params["translate"].abs().max(0).values * 256
    moved = shift + (1 / params["scale"] - 1).abs() * (128 * math.sqrt(2) + shift)
    elastic = params["elastic"].flatten(0, 2).abs().amax(0) * 1.3 * self_blend.ELASTIC_STD * 256  # bicubic overshoot
    feathered = (params["feather"] / 2 - params["erosion"]).clamp_min(0) * 256 / params["stretch"].amin(0)
    grid = self_blend.MASK_GRID_FACTOR * math.sqrt(2) + 1  # upsampling, and the hull's 32 sides
    reach = (moved + elastic + feathered + grid).view(-1, 1, 1, 1)
    distance = hull_distance(landmarks, 256, 256)[:, None]
    assert not ((masks > 0) & (distance < -reach)).any()
    assert ((masks > 0) & (distance < -0.4 * reach)).any()  # the bound is not loose (worst cases rarely add up)


def test_mask_is_in_unit_range_and_covers_the_face(faces):
    images, landmarks = faces
    blender = SelfBlender()
    params = blender.draw(len(images), torch.Generator().manual_seed(1))
    fakes, masks, made = blender(images, landmarks, params)
    assert masks.min() >= 0 and masks.max() <= 1
    assert torch.allclose(masks.amax(dim=(1, 2, 3)), params["ratio"])  # scaled to the blend ratio
    nose_tip = landmarks[:, 30].round().long()
    assert (masks[torch.arange(len(images)), 0, nose_tip[:, 1], nose_tip[:, 0]] > 0).all()
    assert (masks[..., :10, :] == 0).all() and (masks[..., :, :10] == 0).all()  # the image's border is kept
    # a face smaller than the erosion is still blended, at its ratio
    tiny = (landmarks - 128) * 0.05 + 128
    _, tiny_masks, tiny_made = blender(images, tiny, params)
    assert tiny_made.all() and torch.allclose(tiny_masks.amax(dim=(1, 2, 3)), params["ratio"])


def test_same_seed_same_pseudo_fakes_and_other_seeds_differ(faces):
    images, landmarks = faces
    first, first_masks, _ = self_blend.self_blend(images, landmarks, torch.Generator().manual_seed(3))
    again, again_masks, _ = self_blend.self_blend(images, landmarks, torch.Generator().manual_seed(3))
    other, other_masks, _ = self_blend.self_blend(images, landmarks, torch.Generator().manual_seed(4))
    assert torch.equal(first, again) and torch.equal(first_masks, again_masks)
    for index in range(len(images)):
        assert not torch.equal(first[index], other[index]) and not torch.equal(first_masks[index], other_masks[index])


@pytest.mark.parametrize("chunk", [4, 100], ids=["in CPU chunks", "whole batch"])
def test_batch_equals_its_images_one_by_one(faces, monkeypatch, chunk):
    images, landmarks = faces
    blender = SelfBlender(SelfBlendConfig(jpeg_prob=0.5))
    params = blender.draw(len(images), torch.Generator().manual_seed(5))
    assert (params["jpeg"] > 0).any() and (params["downscale"] > 0).any() and (params["sharpen"] > 0).any()
    monkeypatch.setattr(self_blend, "CPU_CHUNK", chunk)
    fakes, masks, made = blender(images, landmarks, params)
    monkeypatch.undo()
    for index in range(len(images)):
        one = blender(images[index:index + 1], landmarks[index:index + 1], blender.select(params, index, index + 1))
        assert torch.equal(one[0][0], fakes[index]) and torch.equal(one[1][0], masks[index])
        assert one[2][0] == made[index]


def test_ellipse_mode_needs_no_landmarks(faces):
    images, _ = faces
    fakes, masks, made = blend(images, None, mask="ellipse")
    assert made.all() and (masks.amax(dim=(1, 2, 3)) > 0).all()
    assert (masks[..., 148, 128] > 0).all()  # about the crop's centre, a little below
    assert (masks[..., :16, :] == 0).all() and (masks[..., :, :16] == 0).all()
    changed = (fakes != images).any(1, keepdim=True)
    assert changed.any() and not (changed & (masks == 0)).any()


def test_images_without_landmarks_are_unchanged_under_hull_and_get_the_ellipse_if_allowed(faces):
    images, landmarks = faces
    missing = landmarks.clone()
    missing[1:3] = math.nan
    fakes, masks, made = blend(images, missing, mask="hull")
    assert made.tolist() == [True, False, False, True, True, True]
    assert torch.equal(fakes[1:3], images[1:3]) and (masks[1:3] == 0).all() and (masks[0] > 0).any()
    either, either_masks, either_made = blend(images, missing, mask="hull-or-ellipse")
    ellipse, ellipse_masks, _ = blend(images, None, mask="ellipse")
    assert either_made.all()
    assert torch.equal(either[1:3], ellipse[1:3]) and torch.equal(either_masks[1:3], ellipse_masks[1:3])
    assert torch.equal(either[3:], fakes[3:]) and torch.equal(either_masks[3:], masks[3:])
    unchanged, none_masks, none_made = blend(images, None, mask="hull")
    assert torch.equal(unchanged, images) and not none_made.any() and (none_masks == 0).all()


IDENTITY = {"shift": 0.0, "hue": 0.0, "saturation": 1.0, "brightness": 0.0, "contrast": 1.0, "sharpen": 0.0,
            "downscale": 0, "translate": 0.0, "scale": 1.0}


def test_unchanged_source_gives_the_image_and_a_shifted_source_moves_with_its_mask(faces):
    images, landmarks = faces
    same, _, _ = blend(images, landmarks, **IDENTITY)
    assert torch.equal(same, images)
    moved = dict(IDENTITY, translate=torch.tensor([[1 / 256], [0.0]]), ratio=1.0)
    shifted, masks, _ = blend(images, landmarks, **moved)
    inside = masks[:, 0, :, 1:] == 1
    assert inside.sum() > 1000
    moved_right = shifted[:, :, :, 1:].permute(1, 0, 2, 3)[:, inside]
    assert torch.equal(moved_right, images[:, :, :, :-1].permute(1, 0, 2, 3)[:, inside])
    # the mask moves with the source: 3% of the width to the right (elastic deformation off, as it does not move)
    columns = torch.arange(256.0)
    still = dict(IDENTITY, elastic=0.0)
    centre = [(m.sum(1)[0] * columns).sum() / m.sum() for m in blend(images, landmarks, **still)[1]]
    right = [(m.sum(1)[0] * columns).sum() / m.sum()
             for m in blend(images, landmarks, **dict(still, translate=torch.tensor([[0.03], [0.0]])))[1]]
    assert np.allclose(np.subtract(right, centre), 0.03 * 256, atol=0.2)


def test_colour_changes_of_the_source():
    image = torch.tensor([200.0, 100.0, 50.0]).view(1, 3, 1, 1).expand(1, 3, 4, 4)
    base = {key: torch.tensor([value]) for key, value in IDENTITY.items() if key not in ("translate", "downscale")}
    base["shift"] = torch.zeros(3, 1)
    colour = self_blend._colour_transform
    assert torch.allclose(colour(image, base), image)
    rotated = colour(image, dict(base, hue=torch.tensor([2 * math.pi / 3])))  # a third of the hue circle
    assert torch.allclose(rotated[0, :, 0, 0], torch.tensor([50.0, 200.0, 100.0]), atol=1e-3)
    grey = colour(image, dict(base, saturation=torch.tensor([0.0])))[0, :, 0, 0]
    assert torch.allclose(grey, torch.full((3,), 0.299 * 200 + 0.587 * 100 + 0.114 * 50), atol=1e-3)
    brighter = colour(image, dict(base, brightness=torch.tensor([0.1]), shift=torch.tensor([[10.0], [0], [0]])))
    assert torch.allclose(brighter[0, :, 0, 0], torch.tensor([235.5, 125.5, 75.5]))


def test_sharpening_and_downscaling_of_the_source():
    step = torch.full((2, 3, 8, 8), 50.0)
    step[..., 4:] = 150.0
    sharpened = self_blend._sharpen_or_downscale(step.clone(), {"sharpen": torch.tensor([1.0, 0.0]),
                                                                "downscale": torch.tensor([0, 0])})
    row = sharpened[0, 0, 3]
    assert torch.allclose(row[1:7], torch.tensor([50, 50, 50 - 100 / 3, 150 + 100 / 3, 150, 150]))
    assert torch.equal(sharpened[0, :, 0], step[0, :, 0]) and torch.equal(sharpened[1], step[1])  # border, amount 0
    checkers = ((torch.arange(8)[:, None] + torch.arange(8)) % 2 * 200.0).expand(2, 3, 8, 8).clone()
    for factor in (2, 4):  # nearest downscaling keeps only the even pixels: a 2-pixel checkerboard is gone
        downscaled = self_blend._sharpen_or_downscale(checkers.clone(), {"sharpen": torch.zeros(2),
                                                                         "downscale": torch.tensor([factor, 0])})
        assert (downscaled[0] == 0).all() and torch.equal(downscaled[1], checkers[1])


def test_jpeg_recompression_comes_after_blending(faces):
    images, landmarks = faces
    blender = SelfBlender(SelfBlendConfig(jpeg_prob=1.0))
    params = blender.draw(len(images), torch.Generator().manual_seed(0))
    compressed, _, _ = blender(images, landmarks, params)
    plain, _, _ = blender(images, landmarks, dict(params, jpeg=torch.zeros_like(params["jpeg"])))
    for index, quality in enumerate(params["jpeg"].tolist()):
        assert 40 <= quality <= 100
        assert torch.equal(compressed[index], jpeg_roundtrip(plain[index], quality))
    missing = landmarks.clone()
    missing[0] = math.nan
    kept, _, _ = blender(images, missing, params)
    assert torch.equal(kept[0], images[0])  # an image not blended is not compressed either


def test_an_empty_batch_gives_empty_results():
    fakes, masks, made = self_blend.self_blend(torch.zeros(0, 3, 256, 256, dtype=torch.uint8), None,
                                               torch.Generator().manual_seed(0), mask="ellipse")
    assert fakes.shape == (0, 3, 256, 256) and masks.shape == (0, 1, 256, 256) and made.shape == (0,)


def test_bad_config_is_refused():
    with pytest.raises(ValueError, match="mask must be one of"):
        SelfBlendConfig(mask="square")
    with pytest.raises(ValueError, match="jpeg_prob"):
        SelfBlendConfig(jpeg_prob=1.5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_gives_the_cpu_pseudo_fakes(faces):
    images, landmarks = faces
    blender = SelfBlender()
    params = blender.draw(len(images), torch.Generator().manual_seed(0))
    fakes, masks, made = blender(images, landmarks, params)
    on_gpu = blender(images.cuda(), landmarks.cuda(), blender.to(params, "cuda"))
    assert on_gpu[0].device.type == "cuda" and torch.equal(on_gpu[2].cpu(), made)
    assert (on_gpu[0].cpu().int() - fakes.int()).abs().max() <= 1
    assert torch.allclose(on_gpu[1].cpu(), masks, atol=1e-4)


@pytest.fixture
def real_split(tmp_path):
    images, landmarks = drawn_faces(3, seed=1)
    folder = tmp_path / "faces" / "train" / "real"
    folder.mkdir(parents=True)
    for index, image in enumerate(images):
        Image.fromarray(image.permute(1, 2, 0).numpy()).resize((128, 128)).save(folder / f"{index}.png")
    return tmp_path / "faces", landmarks


def test_plot_script_draws_hull_and_ellipse_pseudo_fakes(real_split, tmp_path, capsys):
    root, landmarks = real_split
    landmarks_file = tmp_path / "landmarks.json"
    half = (landmarks[:2] + 0.5) / 2 - 0.5  # the images were saved at 128 pixels
    landmarks_file.write_text(json.dumps({f"{index}.png": points.tolist() for index, points in enumerate(half)}))
    assert plot_self_blend.main(["-d", str(root), "--count", "3", "--landmarks", str(landmarks_file),
                                 "--figures-dir", str(tmp_path / "figures")]) == 0
    figure = tmp_path / "figures" / "self_blend_faces.png"
    assert figure.stat().st_size > 10_000 and "wrote" in capsys.readouterr().out
    image, points = self_blend_figure.load_face(root / "train" / "real" / "0.png", half[0].numpy())
    assert image.shape == (3, 256, 256) and np.allclose(points, landmarks[0].numpy(), atol=1e-4)
    assert plot_self_blend.main(["-d", str(root), "--count", "2", "--figures-dir", str(tmp_path / "ellipse")]) == 0
    assert (tmp_path / "ellipse" / "self_blend_faces.png").is_file()


@pytest.mark.parametrize("content, message", [(None, "cannot read the landmarks file"), ("{", "not valid JSON"),
                                              ("[1, 2]", "not an object"), ('{"0.png": [[1, 2]]}', "at least 3"),
                                              (json.dumps({"0.png": [[1, 2]] * 3, "1.png": [[1, 2]] * 4}),
                                               "different numbers of landmarks")])
def test_plot_script_bad_landmarks_file_is_one_line(real_split, tmp_path, capsys, content, message):
    root, _ = real_split
    landmarks_file = tmp_path / "landmarks.json"
    if content is not None:
        landmarks_file.write_text(content)
    assert plot_self_blend.main(["-d", str(root), "--landmarks", str(landmarks_file),
                                 "--figures-dir", str(tmp_path / "figures")]) == 1
    error = capsys.readouterr().err
    assert message in error and str(landmarks_file) in error and error.count("\n") == 1
    assert not (tmp_path / "figures").exists()


@pytest.mark.parametrize("flags, message", [(["--count", "0"], "--count must be >= 1"),
                                            (["--jpeg-prob", "2"], "--jpeg-prob must be in [0, 1]")])
def test_plot_script_bad_arguments_exit_2(real_split, tmp_path, capsys, flags, message):
    root, _ = real_split
    with pytest.raises(SystemExit) as exit_info:
        plot_self_blend.main(["-d", str(root), "--figures-dir", str(tmp_path / "figures")] + flags)
    assert exit_info.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "figures").exists()


def test_plot_script_has_help(capsys):
    with pytest.raises(SystemExit) as exit_info:
        plot_self_blend.main(["--help"])
    assert exit_info.value.code == 0 and "--landmarks" in capsys.readouterr().out


def test_bench_prints_a_table(capsys):
    path = Path(__file__).parents[1] / "tools" / "bench_self_blend.py"  # tools/ is not a package
    spec = importlib.util.spec_from_file_location("bench_self_blend", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert bench.main(["--batches", "2", "--repeats", "1"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ") and "mask" not in line]
    assert len(rows) == len(bench.CASES) and all(float(row.split("|")[4].replace(",", "")) > 0 for row in rows)


def test_pairs_put_each_pseudo_fake_beside_its_real_image_with_its_augmentation_source():
    labels = torch.tensor([0, 1, 0, 0])
    images = torch.randint(0, 256, (4, 3, 64, 64), dtype=torch.uint8)
    blends = EpochBlends(1.0, labels, None, seed=0, config=SelfBlendConfig(mask="ellipse"), pairs=True)
    masks = torch.zeros(4, 1, 64, 64)
    out, out_labels, out_masks, sources = blends.apply(images, torch.arange(4), labels, masks)
    assert torch.equal(out[:4], images)  # every image keeps its place
    assert out_labels.tolist() == [0, 1, 0, 0, 1, 1, 1]  # the three reals' pseudo-fakes follow
    assert sources.tolist() == [0, 1, 2, 3, 0, 2, 3]
    assert out_masks.shape == (7, 1, 64, 64) and out_masks[4:].amax((1, 2, 3)).gt(0).all()
    assert not out_masks[:4].any()
    assert blends.expected_class_counts() == (3.0, 4.0)
    replaced = EpochBlends(1.0, labels, None, seed=0, config=SelfBlendConfig(mask="ellipse"))
    fakes, fake_labels, _, fake_sources = replaced.apply(images, torch.arange(4), labels)
    assert torch.equal(fakes[[0, 2, 3]], out[4:])  # the same pseudo-fakes, in place of their reals
    assert fake_labels.tolist() == [1, 1, 1, 1] and fake_sources.tolist() == [0, 1, 2, 3]


def test_pairs_skip_a_real_image_whose_mask_is_empty():
    labels = torch.zeros(2, dtype=torch.int64)
    landmarks = torch.full((2, 68, 2), float("nan"))
    landmarks[1] = torch.rand(68, 2) * 30 + 10
    blends = EpochBlends(1.0, labels, landmarks, seed=0, config=SelfBlendConfig(mask="hull"), pairs=True)
    out, out_labels, _, sources = blends.apply(torch.zeros(2, 3, 64, 64, dtype=torch.uint8), torch.arange(2), labels)
    assert out_labels.tolist() == [0, 0, 1] and sources.tolist() == [0, 1, 1]  # no landmarks, no pseudo-fake
