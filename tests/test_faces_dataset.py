import json
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fakedetect.data import cache as decode_cache
from fakedetect.data import images
from fakedetect.data.augment import AugmentConfig, Augmenter
from fakedetect.data.batches import balanced_sample_weights, item_transform, make_batches
from fakedetect.data.cache import DecodedFaces, decode_dataset
from fakedetect.data.folders import FacesDataset, landmarks_tensor
from fakedetect.data.images import DatasetError, load_image
from fakedetect.data.normalization import channel_statistics
from fakedetect.data.self_blend import EpochBlends, SelfBlendConfig


def write_image(path, size=(256, 256), colour=(128, 64, 32), mode="RGB", **save_args):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, colour).save(path, **save_args)
    return path


@pytest.fixture
def small_split(tmp_path):
    for index in range(3):
        write_image(tmp_path / "real" / f"r{2 - index}.png", colour=(10 * index, 0, 0))
    for index in range(2):
        write_image(tmp_path / "fake" / f"f{index}.jpg", colour=(0, 200, 10 * index))
    return tmp_path


def test_labels_length_and_sorted_order(small_split):
    dataset = FacesDataset(small_split)
    assert len(dataset) == 5
    assert [path.name for path in dataset.files] == ["r0.png", "r1.png", "r2.png", "f0.jpg", "f1.jpg"]
    assert dataset.labels == [0, 0, 0, 1, 1]
    image, label = dataset[3]
    assert image.shape == (3, 256, 256) and image.dtype == torch.float32 and label == 1
    assert 0.0 <= image.min() and image.max() <= 1.0


def test_transform_is_applied(small_split):
    dataset = FacesDataset(small_split, transform=lambda image: "transformed")
    assert dataset[0] == ("transformed", 0)


def test_non_images_hidden_files_and_nested_folders(small_split):
    (small_split / "real" / ".DS_Store").write_bytes(b"\0\1")
    (small_split / "real" / "notes.txt").write_text("hello")
    (small_split / "real" / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0")
    write_image(small_split / "real" / "nested" / "deeper.png")
    dataset = FacesDataset(small_split)
    assert [path.name for path in dataset.real_image_files] == ["deeper.png", "r0.png", "r1.png", "r2.png"]


@pytest.mark.parametrize("missing", ["root", "real", "fake"])
def test_missing_folders_name_the_path(small_split, missing):
    root = small_split / "nowhere" if missing == "root" else small_split
    if missing != "root":
        shutil.rmtree(small_split / missing)
    with pytest.raises(DatasetError, match=str(root / missing) if missing != "root" else "nowhere"):
        FacesDataset(root)


def test_class_without_images(small_split):
    for path in (small_split / "fake").iterdir():
        path.unlink()
    with pytest.raises(DatasetError, match="fake.*no images"):
        FacesDataset(small_split)


def test_corrupt_image_named_in_error(small_split):
    (small_split / "fake" / "broken.jpg").write_bytes(b"this is not a jpeg")
    dataset = FacesDataset(small_split)
    with pytest.raises(DatasetError, match="broken.jpg"):
        dataset[dataset.files.index(small_split / "fake" / "broken.jpg")]


def test_image_modes_and_sizes_become_rgb_256(tmp_path):
    cases = {
        "gray.png": write_image(tmp_path / "gray.png", mode="L", colour=100),
        "rgba.png": write_image(tmp_path / "rgba.png", mode="RGBA", colour=(1, 2, 3, 4)),
        "palette.png": write_image(tmp_path / "palette.png", mode="P", colour=5),
        "cmyk.jpg": write_image(tmp_path / "cmyk.jpg", mode="CMYK", colour=(0, 0, 0, 0)),
        "small.bmp": write_image(tmp_path / "small.bmp", size=(8, 8)),
        "wide.webp": write_image(tmp_path / "wide.webp", size=(400, 300)),
    }
    deep = np.full((20, 20), 65535, dtype=np.uint16)
    Image.fromarray(deep).save(tmp_path / "deep.png")
    cases["deep.png"] = tmp_path / "deep.png"
    for name, path in cases.items():
        image = load_image(path)
        assert image.mode == "RGB" and image.size == (256, 256), name
    assert np.asarray(load_image(tmp_path / "deep.png")).min() == 255
    assert np.asarray(load_image(tmp_path / "cmyk.jpg")).mean() > 200


def grey_levels(path):
    """The 8-bit grey levels ``load_image`` gives a file, as a set."""
    return set(np.unique(np.asarray(load_image(path, size=None))).tolist())


def test_16_bit_and_float_images_are_scaled_by_their_mode_not_their_values(tmp_path):
    dark = np.array([[0, 255], [128, 1]], dtype=np.uint16)  # a dark 16-bit image: at most 1/257 of white
    Image.fromarray(dark).save(tmp_path / "dark.png")
    Image.fromarray(dark * 257).save(tmp_path / "bright.png")  # 257 * 255 = 65535, white
    Image.fromarray((dark * 257).astype(">u2")).save(tmp_path / "big_endian.tif")
    Image.fromarray(np.array([[0.0, 1.0], [0.5, 0.25]], dtype=np.float32)).save(tmp_path / "float.tif")
    assert Image.open(tmp_path / "dark.png").mode == "I;16" and Image.open(tmp_path / "float.tif").mode == "F"
    assert Image.open(tmp_path / "big_endian.tif").mode == "I;16B"
    assert grey_levels(tmp_path / "dark.png") == {0, 1}  # 255 / 257 rounds to 1, not to 255
    assert grey_levels(tmp_path / "bright.png") == grey_levels(tmp_path / "big_endian.tif") == {0, 1, 128, 255}
    assert grey_levels(tmp_path / "float.tif") == {0, 64, 128, 255}


def test_16_bit_samples_read_as_mode_i_are_scaled_too(tmp_path):
    image = Image.fromarray(np.full((2, 2), 65535, dtype=np.uint16)).convert("I")
    assert images.to_8_bit(image, "I;16B").getextrema() == (255, 255)
    with pytest.raises(ValueError, match=r"32-bit or signed integer pixels \(I;32S\)"):
        images.to_8_bit(image, "I;32S")


@pytest.mark.parametrize("name, pixels, says", [
    ("over.tif", np.array([[0.0, 2.0]], dtype=np.float32), "float pixels from 0 to 2, outside \\[0, 1\\]"),
    ("negative.tif", np.array([[-1.0, 0.5]], dtype=np.float32), "float pixels from -1 to 0.5"),
    ("nan.tif", np.array([[np.nan, 0.5]], dtype=np.float32), "float pixels from nan"),
    ("wide.tif", np.array([[70000, -3]], dtype=np.int32), r"32-bit or signed integer pixels \(I;32S\)"),
])
def test_images_without_a_faithful_8_bit_mapping_are_refused_by_name(tmp_path, name, pixels, says):
    Image.fromarray(pixels).save(tmp_path / name)
    with pytest.raises(DatasetError, match=f"{name}: cannot map its (F|I) pixels to 8-bit RGB \\({says}.*; save it as"):
        load_image(tmp_path / name)


def test_float_pixels_within_half_a_step_of_the_range_are_kept(tmp_path):
    Image.fromarray(np.array([[-0.001, 1.001]], dtype=np.float32)).save(tmp_path / "rounding.tif")
    assert grey_levels(tmp_path / "rounding.tif") == {0, 255}


def test_odd_images_are_skipped_with_a_warning_on_both_paths(small_split, capsys):
    Image.fromarray(np.full((8, 8), 3.0, dtype=np.float32)).save(small_split / "fake" / "hdr.png", format="TIFF")
    decoded = decode_dataset(FacesDataset(small_split), cache_dir=None, progress=False)
    assert len(decoded) == 5
    assert "warning: skipped " in capsys.readouterr().out
    dataset = decode_cache.drop_unreadable(FacesDataset(small_split), progress=False)
    assert len(dataset) == 5 and "hdr.png: cannot map its F pixels" in capsys.readouterr().out


def test_exif_orientation_is_honoured(tmp_path):
    array = np.zeros((256, 256, 3), dtype=np.uint8)
    array[:, :128] = 255  # left half white
    exif = Image.Exif()
    exif[0x0112] = 3  # rotated 180 degrees: the white half must end on the right
    Image.fromarray(array).save(tmp_path / "rotated.jpg", exif=exif, quality=95)
    image = np.asarray(load_image(tmp_path / "rotated.jpg"))
    assert image[:, :100].mean() < 30 and image[:, -100:].mean() > 220


def test_decompression_bomb_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(images, "MAX_IMAGE_PIXELS", 1000)
    monkeypatch.setattr(images.Image, "MAX_IMAGE_PIXELS", 1000)
    write_image(tmp_path / "bomb.png", size=(100, 100))
    with pytest.raises(DatasetError, match="bomb.png.*too large"):
        load_image(tmp_path / "bomb.png")


def test_decode_matches_per_item_images(small_split, tmp_path):
    dataset = FacesDataset(small_split)
    decoded = decode_dataset(dataset, cache_dir=tmp_path / "cache", workers=2, progress=False)
    assert decoded.images.shape == (5, 3, 256, 256) and decoded.images.dtype == torch.uint8
    assert decoded.labels.tolist() == dataset.labels
    for index in range(len(dataset)):
        expected = torch.from_numpy(np.array(load_image(dataset.files[index]))).permute(2, 0, 1)
        assert torch.equal(decoded.images[index], expected)


def test_cache_is_reused_and_invalidated_by_changes(small_split, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    first = decode_dataset(FacesDataset(small_split), cache_dir=cache, progress=False)
    assert len(list(cache.glob("*.u8"))) == 1

    def no_decoding(path):
        raise AssertionError("decoded again although cached")
    monkeypatch.setattr(decode_cache, "decode_pixels", no_decoding)
    second = decode_dataset(FacesDataset(small_split), cache_dir=cache, progress=False)
    assert torch.equal(first.images, second.images)
    monkeypatch.undo()
    write_image(small_split / "fake" / "f9.png", colour=(1, 2, 3))
    third = decode_dataset(FacesDataset(small_split), cache_dir=cache, progress=False)
    assert len(third) == 6 and len(list(cache.glob("*.u8"))) == 2


def test_decode_skips_bad_files_unless_strict(small_split, tmp_path, capsys):
    (small_split / "real" / "empty.png").write_bytes(b"")
    decoded = decode_dataset(FacesDataset(small_split), cache_dir=None, progress=False)
    assert len(decoded) == 5 and "empty.png" in capsys.readouterr().out
    with pytest.raises(DatasetError, match="empty.png"):
        decode_dataset(FacesDataset(small_split), cache_dir=None, strict=True, progress=False)


def test_decode_fails_when_a_class_has_no_readable_image(small_split):
    for path in (small_split / "fake").iterdir():
        path.write_bytes(b"garbage")
    with pytest.raises(DatasetError, match="fake.*no readable images"):
        decode_dataset(FacesDataset(small_split), cache_dir=None, progress=False)


def random_crop_flip(images, generator):
    """The bulk path's default training augmentation (crop with 4-pixel padding + flip)."""
    augmenter = Augmenter(AugmentConfig())
    return augmenter(images, augmenter.draw(len(images), generator))


def augmentation_parameters(batch):
    """Recover (row offset, column offset, flipped) from augmented copies of the coded image below."""
    params = []
    for image in batch:
        code = image[0].to(torch.int64)
        rows = (code > 0).any(1).nonzero()
        columns = (code > 0).any(0).nonzero()
        top, left = int(rows[0]), int(columns[0])
        flipped = bool(image[1, top, left] > image[1, top, int(columns[-1])])
        params.append((top, left, flipped))
    return params


def coded_image():
    """A uint8 image whose augmented copies reveal the crop offset (zero padding) and flip."""
    image = torch.full((3, 256, 256), 1, dtype=torch.uint8)
    image[1] = torch.linspace(10, 250, 256).to(torch.uint8)[None, :]
    return image


def test_bulk_and_per_item_augmentation_have_the_same_distribution():
    draws = 3000
    generator = torch.Generator().manual_seed(0)
    bulk = random_crop_flip(coded_image()[None].repeat(draws, 1, 1, 1), generator)
    transform = item_transform((0.0,) * 3, (1 / 255,) * 3, train=True)
    pil_image = Image.fromarray(coded_image().permute(1, 2, 0).numpy())
    torch.manual_seed(0)
    per_item = torch.stack([transform(pil_image).round().to(torch.uint8) for _ in range(draws)])
    for params in (augmentation_parameters(bulk), augmentation_parameters(per_item)):
        tops = np.array([p[0] for p in params])
        flips = np.array([p[2] for p in params])
        assert set(tops) == set(range(5)) | {0}  # zero padding shows as offset 0..4 from the top edge
        assert abs(flips.mean() - 0.5) < 0.04
    bulk_counts = np.bincount([p[0] * 10 + p[1] for p in augmentation_parameters(bulk)], minlength=100)
    item_counts = np.bincount([p[0] * 10 + p[1] for p in augmentation_parameters(per_item)], minlength=100)
    expected = draws * np.bincount([min(4, max(0, 4 - r)) * 10 + min(4, max(0, 4 - c))
                                    for r in range(9) for c in range(9)], minlength=100) / 81
    for counts in (bulk_counts, item_counts):
        observed = counts[expected > 0]
        chi_square = ((observed - expected[expected > 0]) ** 2 / expected[expected > 0]).sum()
        assert chi_square < 60  # 24 degrees of freedom: p < 1e-4 above this


def test_bulk_crop_flip_matches_torchvision_for_given_parameters():
    image = torch.randint(0, 255, (1, 3, 256, 256), dtype=torch.uint8)
    generator = torch.Generator().manual_seed(3)
    state = generator.get_state()
    out = random_crop_flip(image, generator)
    generator.set_state(state)
    top, left = torch.randint(0, 9, (2, 1), generator=generator)[:, 0].tolist()
    flip = bool(torch.rand(1, generator=generator)[0] < 0.5)
    expected = torch.nn.functional.pad(image, (4,) * 4)[..., top:top + 256, left:left + 256]
    expected = expected.flip(-1) if flip else expected
    assert torch.equal(out, expected)


def test_both_batch_paths_normalize_eval_images_identically(small_split):
    dataset = FacesDataset(small_split)
    decoded = decode_dataset(dataset, cache_dir=None, progress=False)
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    generator = torch.Generator().manual_seed(0)
    fast = list(make_batches(decoded, 4, "cpu", mean, std, False, generator))
    slow = list(make_batches(dataset, 4, "cpu", mean, std, False, generator))
    assert len(fast) == len(slow) == 2
    for (fast_images, fast_labels), (slow_images, slow_labels) in zip(fast, slow):
        assert torch.allclose(fast_images, slow_images, atol=1e-5)
        assert torch.equal(fast_labels, slow_labels)


def test_decoded_faces_item_access():
    decoded = DecodedFaces(torch.zeros(2, 3, 256, 256, dtype=torch.uint8), torch.tensor([0, 1]), ["a", "b"], ".")
    image, label = decoded[1]
    assert image.shape == (3, 256, 256) and label == 1 and len(decoded) == 2


def test_full_resolution_read_keeps_the_size(tmp_path):
    write_image(tmp_path / "wide.png", size=(400, 300), mode="L", colour=7)
    image = load_image(tmp_path / "wide.png", size=None)
    assert image.size == (400, 300) and image.mode == "RGB"


@pytest.mark.parametrize("fraction, real, fake", [
    (0.5, [0, 2, 4, 6, 8], [0, 2, 4]),
    (0.25, [0, 4, 8], [0, 4]),
    (0.55, [0, 1, 3, 5, 7, 9], [0, 1, 3, 5]),  # 0.55 * 10 in floating point is 5.500000000000001
    (0.01, [0], [0]),  # at least one image per class
    (1.0, list(range(10)), list(range(6))),
])
def test_keep_fraction_keeps_evenly_spaced_images_of_each_class(tmp_path, fraction, real, fake):
    for index in range(10):
        write_image(tmp_path / "real" / f"r{index}.png", size=(8, 8))
    for index in range(6):
        write_image(tmp_path / "fake" / f"f{index}.png", size=(8, 8))
    dataset = FacesDataset(tmp_path).keep_fraction(fraction)
    assert [path.name for path in dataset.files] == [f"r{i}.png" for i in real] + [f"f{i}.png" for i in fake]
    assert dataset.labels == [0] * len(real) + [1] * len(fake)


def test_keep_fraction_counts_exactly_for_decimal_fractions(tmp_path):
    for index in range(100):
        write_image(tmp_path / "real" / f"r{index:03d}.png", size=(8, 8))
        write_image(tmp_path / "fake" / f"f{index:03d}.png", size=(8, 8))
    for fraction in (0.07, 0.14, 0.27, 0.55, 0.67, 0.81):  # 100 * fraction is not exact in floating point
        dataset = FacesDataset(tmp_path).keep_fraction(fraction)
        kept = [int(path.stem[1:]) for path in dataset.real_image_files]
        assert len(kept) == round(100 * fraction) and kept == sorted(set(kept)) and kept[0] == 0


@pytest.mark.parametrize("fraction", [0, 1.5, float("nan")])
def test_keep_fraction_refuses_fractions_outside_0_1(small_split, fraction):
    with pytest.raises(ValueError, match=r"fraction must be in \(0, 1\]"):
        FacesDataset(small_split).keep_fraction(fraction)


def test_balanced_sampler_draws_both_classes_equally_on_both_paths(tiny_fakes):
    labels = torch.tensor([0] * 90 + [1] * 10)
    weights = balanced_sample_weights(labels)
    decoded = DecodedFaces(torch.zeros(100, 3, 8, 8, dtype=torch.uint8), labels, [""] * 100, "x")
    batches = make_batches(decoded, 50, "cpu", (0.5,) * 3, (0.5,) * 3, True, torch.Generator().manual_seed(0),
                           augment=AugmentConfig(crop="none", flip=False), sample_weights=weights)
    drawn = torch.cat([batch_labels for _ in range(20) for _, batch_labels in batches])
    assert abs(drawn.float().mean().item() - 0.5) < 0.03
    dataset = FacesDataset(tiny_fakes / "train")
    dataset.labels = [0] * 20 + [1] * 4  # a 5:1 split, files unread
    item_batches = make_batches(dataset, 8, "cpu", (0.5,) * 3, (0.5,) * 3, True, torch.Generator().manual_seed(0),
                                sample_weights=balanced_sample_weights(dataset.labels))
    drawn = [dataset.labels[i] for _ in range(200) for i in item_batches.loader.sampler]
    assert abs(np.mean(drawn) - 0.5) < 0.03


def test_dataset_statistics_are_the_same_on_both_paths(tiny_fakes):
    dataset = FacesDataset(tiny_fakes / "train")
    decoded = decode_dataset(dataset, cache_dir=None, progress=False)
    mean, std = channel_statistics(decoded)
    assert (mean, std) == channel_statistics(dataset)
    pixels = decoded.images.double() / 255
    assert mean == pytest.approx(pixels.mean((0, 2, 3)).tolist(), abs=1e-4)
    assert std == pytest.approx(pixels.std((0, 2, 3)).tolist(), abs=1e-3)


def test_a_killed_cache_writes_temporary_file_is_swept_by_the_next_write_under_its_lock(tiny_fakes, tmp_path, capsys):
    dataset = FacesDataset(tiny_fakes / "val")
    decode_dataset(dataset, tmp_path, progress=False)
    [cache] = tmp_path.glob("*.u8")
    cache.unlink()
    left = tmp_path / f".{cache.name}.killed.tmp"  # a write killed half-way
    left.write_bytes(b"half a cache")
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    lock = tmp_path / f".{cache.name}.lock"
    try:
        lock.write_text(json.dumps({"pid": holder.pid, "host": socket.gethostname(), "started": "now"}))
        decoded = decode_dataset(dataset, tmp_path, progress=False)  # another process is writing it: left alone
    finally:
        holder.kill()
        holder.wait()
    assert len(decoded) == len(dataset) and left.exists() and not cache.exists()
    assert f"note: {cache} is being written by another process (pid {holder.pid}" in capsys.readouterr().out
    decode_dataset(dataset, tmp_path, progress=False)  # the holder is gone: its lock is stale
    assert cache.is_file() and not left.exists() and not lock.exists()


def blended_epoch(batches, epoch):
    """The uint8 images and labels of one epoch of ``batches`` (normalized with mean 0, std 1/255), sorted."""
    batches.set_epoch(epoch)
    pairs = [(bytes(image.round().to(torch.uint8).numpy()), int(label)) for images, labels in batches
             for image, label in zip(images, labels)]
    return sorted(pairs)


# The pseudo-fakes' float work (sharpening, resizing, warping) is chunked and threaded differently on the two
# data paths, and CPUs' kernels round differently: a pixel may differ by a grey level or two, never more.
PSEUDO_FAKE_TOLERANCE = 2  # grey levels, any pixel
PSEUDO_FAKE_MEAN_TOLERANCE = 0.05  # grey levels, mean over an image


def assert_same_images(first, second):
    """Two epochs of ``blended_epoch`` hold the same images with the same labels: each image of ``first`` has
    one in ``second`` with its label within the tolerances above (exact images pair with themselves)."""
    assert len(first) == len(second)
    unmatched = [(torch.frombuffer(bytearray(image), dtype=torch.uint8).int(), label) for image, label in second]
    for image, label in first:
        pixels = torch.frombuffer(bytearray(image), dtype=torch.uint8).int()
        differences = [(other - pixels).abs() for other, _ in unmatched]
        nearest = min(range(len(unmatched)), key=lambda i: differences[i].float().mean())
        assert unmatched[nearest][1] == label
        assert differences[nearest].max() <= PSEUDO_FAKE_TOLERANCE
        assert differences[nearest].float().mean() <= PSEUDO_FAKE_MEAN_TOLERANCE
        unmatched.pop(nearest)


@pytest.mark.parametrize("probability", [1.0, 0.5])
def test_self_blending_makes_the_same_pseudo_fakes_on_both_data_paths_whatever_the_order(tiny_fakes, probability):
    dataset = FacesDataset(tiny_fakes / "train")
    decoded = decode_dataset(dataset, cache_dir=None, progress=False)
    landmarks = torch.full((len(dataset), 68, 2), float("nan"))  # none: the ellipse mask
    plain = AugmentConfig(crop="none", flip=False)
    epochs = {}
    for name, source, workers in (("cached", decoded, 0), ("per-item", dataset, 0), ("per-item, 2 workers", dataset, 2)):
        blends = EpochBlends(probability, dataset.labels, landmarks, seed=3, config=SelfBlendConfig(mask="ellipse"))
        batches = make_batches(source, 5, "cpu", (0.0,) * 3, (1 / 255,) * 3, True,
                               torch.Generator().manual_seed(len(name)), workers, augment=plain, self_blend=blends)
        second = blended_epoch(batches, 2)
        chosen = int(blends.chosen.sum())
        epochs[name] = second, blended_epoch(batches, 3)
        real = int((torch.as_tensor(dataset.labels) == 0).sum())
        assert sum(label for _, label in second) == 12 + chosen  # the pseudo-fakes are labelled fake
        assert 0 < chosen <= real and (probability < 1 or chosen == real)
    for name in ("per-item", "per-item, 2 workers"):
        for epoch in (0, 1):
            assert_same_images(epochs["cached"][epoch], epochs[name][epoch])
    assert epochs["cached"][0] != epochs["cached"][1]  # each epoch its own pseudo-fakes
    originals = sorted(bytes(image.numpy()) for image in decoded.images)
    assert sum(image in originals for image, _ in epochs["cached"][0]) == len(dataset) - chosen


def test_landmarks_are_read_for_the_images_the_build_listed_and_scaled_to_the_decoded_size(tiny_fakes, tmp_path):
    split = shutil.copytree(tiny_fakes / "val", tmp_path / "val")
    first = sorted((split / "real").iterdir())[0]
    Image.open(first).resize((128, 128)).save(first)  # landmarks are in the file's own pixels
    points = np.tile([[10.0, 20.0]], (68, 1))
    (split / "landmarks.json").write_text(json.dumps({f"real/{first.name}": points.tolist()}))
    landmarks = landmarks_tensor(FacesDataset(split))
    assert torch.allclose(landmarks[0], torch.tensor([[20.5, 40.5]]).expand(68, 2))  # (x + 0.5) * 2 - 0.5
    assert landmarks[1:].isnan().all()


def test_a_decode_killed_half_way_is_never_trusted(tiny_fakes, tmp_path):
    split, cache = tiny_fakes / "train", tmp_path / "cache"
    script = f"""
import os, signal
from fakedetect.data import cache
from fakedetect.data.folders import FacesDataset
decode, decoded = cache.decode_pixels, []
def dies_at_the_fifth_image(path):
    decoded.append(path)
    if len(decoded) == 5:
        os.kill(os.getpid(), signal.SIGKILL)
    return decode(path)
cache.decode_pixels = dies_at_the_fifth_image
cache.decode_dataset(FacesDataset({str(split)!r}), {str(cache)!r}, workers=1, progress=False)
"""
    assert subprocess.run([sys.executable, "-c", script]).returncode == -signal.SIGKILL
    assert list(cache.glob(".*.u8.*.tmp")) and not list(cache.glob("*.json")) and not list(cache.glob("*.u8"))
    decoded = decode_dataset(FacesDataset(split), cache, progress=False)
    expected = decode_dataset(FacesDataset(split), None, progress=False)
    assert torch.equal(decoded.images, expected.images) and decoded.image_digests == expected.image_digests
    assert sorted(path.suffix for path in cache.iterdir()) == [".json", ".u8"]  # the half file swept, no lock left


@pytest.mark.parametrize("damage", ["index missing", "pixels truncated", "index garbled"])
def test_a_cache_whose_index_and_pixels_disagree_is_decoded_again(tiny_fakes, tmp_path, damage, capsys):
    split = FacesDataset(tiny_fakes / "val")
    first = decode_dataset(split, tmp_path, progress=False)
    pixels = first.mapped_from
    if damage == "index missing":  # killed between the pixel file's rename and the index's
        pixels.with_suffix(".json").unlink()
    elif damage == "pixels truncated":
        with open(pixels, "r+b") as f:
            f.truncate(pixels.stat().st_size - 1)
    else:
        pixels.with_suffix(".json").write_text("{")
    del first
    again = decode_dataset(FacesDataset(tiny_fakes / "val"), tmp_path, progress=False)
    assert torch.equal(again.images, decode_dataset(split, None, progress=False).images)
    assert ("unreadable cache, decoding again" in capsys.readouterr().out) == (damage != "index missing")
    assert decode_dataset(FacesDataset(tiny_fakes / "val"), tmp_path, progress=False).mapped_from == pixels


def anonymous_memory_kib():
    return int(next(line for line in Path("/proc/self/status").read_text().splitlines()
                    if line.startswith("RssAnon:")).split()[1])


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads Linux's /proc")
def test_a_cached_split_is_memory_mapped_not_read_into_memory(tmp_path):
    for index in range(80):  # 15.7 MB of decoded pixels
        write_image(tmp_path / "split" / ("real" if index % 2 else "fake") / f"{index:02d}.png", colour=(index, 0, 0))
    decode_dataset(FacesDataset(tmp_path / "split"), tmp_path / "cache", progress=False)
    before = anonymous_memory_kib()
    decoded = decode_dataset(FacesDataset(tmp_path / "split"), tmp_path / "cache", progress=False)
    brightest = [int(image.max()) for image in decoded.images]  # every page read
    grown = anonymous_memory_kib() - before
    assert sorted(brightest) == list(range(80)) and grown < 4 * 1024, grown


def test_decoding_runs_a_bounded_window_ahead_of_the_writer(small_split, monkeypatch):
    for index in range(40):
        write_image(small_split / "real" / f"extra{index:02d}.png")
    started = []
    decode = decode_cache.decode_pixels
    monkeypatch.setattr(decode_cache, "decode_pixels", lambda path: (started.append(path), decode(path))[1])
    ahead = []
    for count, _ in enumerate(decode_cache._readable_images(FacesDataset(small_split), 2, False, False, []), 1):
        time.sleep(0.002)  # a slow writer: the decoders must wait for it
        ahead.append(len(started) - count)
    assert len(started) == 45 and max(ahead) <= 4 * 2


def test_a_file_skipped_while_decoding_into_the_cache_is_warned_about_once(small_split, tmp_path, capsys):
    (small_split / "real" / "empty.png").write_bytes(b"")
    decoded = decode_dataset(FacesDataset(small_split), tmp_path / "cache", progress=False)
    out = capsys.readouterr().out
    assert len(decoded) == 5 and decoded.mapped_from is not None
    assert out.count("warning: skipped ") == 1 and out.count("could not be read and were skipped") == 1, out
    decode_dataset(FacesDataset(small_split), tmp_path / "cache", progress=False)  # read back: warned again, once
    out = capsys.readouterr().out
    assert out.count("warning: skipped ") == 1 and out.count("could not be read and were skipped") == 1, out
