"""Generate the two embedded demo datasets, deterministically from a seed.

* ``demo_fakes`` (face-swap style): the inner face (eyes, nose, mouth) of one procedurally
  drawn identity is pasted onto another, colour-corrected only partly, re-blurred and
  blended with a feathered mask: the blending boundary, colour and noise mismatch are the tells.
  Its test split is 2:1 real:fake, like the course's deepfake test set.
* ``demo_synthetic`` (generator style): the face is rendered at half resolution and
  upsampled by a "generator" that leaves a periodic (checkerboard) spectral fingerprint
  and no camera noise, on top of a normally rendered background.

Layout: ``{out}/{name}/{train,val,test}/{real,fake}/NNNNN.png`` plus the ground-truth
manipulation mask of every fake in ``{split}/masks/NNNNN.png`` (255 = manipulated) and a
``manifest.json``. The command: ``python demo_data.py [--output data] [--seed 0] [--workers N]``.
"""
import json
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter
from tqdm import tqdm

SIZE = 256
VERSION = 2
SPLIT_COUNTS = {  # (real, fake) images per split
    "demo_fakes": {"train": (250, 250), "val": (75, 75), "test": (100, 50)},
    "demo_synthetic": {"train": (250, 250), "val": (75, 75), "test": (75, 75)},
}


def _grid(size):
    coordinates = np.arange(size, dtype=np.float32) + 0.5
    return np.meshgrid(coordinates, coordinates, indexing="xy")


def _ellipse(xx, yy, cx, cy, rx, ry, softness=1.5):
    """Anti-aliased filled ellipse as an alpha map in [0, 1]."""
    distance = np.sqrt(((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2)
    return np.clip((1.0 - distance) * min(rx, ry) / softness + 0.5, 0.0, 1.0)


def _paint(canvas, alpha, colour):
    canvas *= 1.0 - alpha[..., None]
    canvas += alpha[..., None] * np.asarray(colour, dtype=np.float32)


def random_identity(rng):
    """The parameters of one drawn person."""
    tone = rng.uniform(0.25, 0.95)
    skin = np.array([0.35 + 0.6 * tone, 0.22 + 0.55 * tone, 0.15 + 0.45 * tone]) * rng.uniform(0.9, 1.05, 3)
    return {
        "skin": np.clip(skin, 0, 1), "hair": rng.uniform(0.02, 0.6) * rng.uniform(0.6, 1.0, 3),
        "iris": rng.uniform(0.05, 0.6, 3), "lips": np.clip(skin * rng.uniform(0.55, 0.85, 3) + [0.12, 0, 0], 0, 1),
        "background": rng.uniform(0.1, 0.9, (2, 3)), "face_center": (128 + rng.uniform(-6, 6), 136 + rng.uniform(-6, 6)),
        "face_radii": (rng.uniform(62, 76), rng.uniform(80, 94)), "hair_height": rng.uniform(0.75, 1.0),
        "eye_spacing": rng.uniform(22, 30), "eye_height": rng.uniform(-22, -12), "eye_size": rng.uniform(6, 10),
        "nose_length": rng.uniform(14, 24), "mouth_width": rng.uniform(18, 30), "mouth_height": rng.uniform(30, 42),
        "light": rng.uniform(-0.25, 0.25, 2),
    }


def render_face(person, size=SIZE):
    """Draw ``person`` on its background as a float32 RGB image in [0, 1] of ``size`` pixels."""
    scale = size / SIZE
    xx, yy = _grid(size)
    xx, yy = xx / scale, yy / scale
    top, bottom = person["background"]
    canvas = (top * (1 - yy[..., None] / SIZE) + bottom * (yy[..., None] / SIZE)).astype(np.float32)
    cx, cy = person["face_center"]
    rx, ry = person["face_radii"]
    _paint(canvas, _ellipse(xx, yy, cx, cy - ry * 0.25, rx * 1.12, ry * person["hair_height"]), person["hair"])
    _paint(canvas, _ellipse(xx, yy, cx, cy, rx, ry), person["skin"])
    shading = 1.0 + person["light"][0] * (xx - cx) / rx + person["light"][1] * (yy - cy) / ry
    face = _ellipse(xx, yy, cx, cy, rx, ry)
    canvas *= (1 + face * (shading - 1))[..., None]
    eye_y = cy + person["eye_height"]
    for side in (-1, 1):
        ex = cx + side * person["eye_spacing"]
        _paint(canvas, _ellipse(xx, yy, ex, eye_y, person["eye_size"] * 1.6, person["eye_size"]), (0.95, 0.95, 0.93))
        _paint(canvas, _ellipse(xx, yy, ex, eye_y, person["eye_size"] * 0.7, person["eye_size"] * 0.7), person["iris"])
        _paint(canvas, _ellipse(xx, yy, ex, eye_y, person["eye_size"] * 0.3, person["eye_size"] * 0.3), (0.02, 0.02, 0.02))
        _paint(canvas, _ellipse(xx, yy, ex, eye_y - person["eye_size"] * 1.8, person["eye_size"] * 1.8, 2.5), person["hair"] * 0.8)
    nose = _ellipse(xx, yy, cx, cy + person["nose_length"] * 0.4, 5, person["nose_length"] * 0.6)
    _paint(canvas, nose * 0.5, person["skin"] * 0.75)
    _paint(canvas, _ellipse(xx, yy, cx, cy + person["mouth_height"], person["mouth_width"], 5), person["lips"])
    return np.clip(canvas, 0, 1)


def _ellipse_points(cx, cy, rx, ry, angles):
    return np.stack([cx + rx * np.cos(angles), cy + ry * np.sin(angles)], 1)


def face_landmarks(person):
    """68 face landmarks (iBUG 300-W order, image-left first) of ``person`` as ``render_face`` draws
    it, as a float32 68 x 2 array of (x, y) pixel coordinates (pixel (0, 0)'s centre at (0, 0), as
    dlib gives them): jaw along the lower face outline from eye level, brows, nose, eyes and lips
    where they are painted."""
    cx, cy = person["face_center"]
    rx, ry = person["face_radii"]
    eye_y, eye_size = cy + person["eye_height"], person["eye_size"]
    ear = np.arcsin(-person["eye_height"] / ry)  # the jaw starts at eye level
    jaw = _ellipse_points(cx, cy, rx, ry, np.linspace(np.pi + ear, -ear, 17))
    brows, eyes = [], []
    for side in (-1, 1):
        ex = cx + side * person["eye_spacing"]
        spread = np.linspace(-1.8, 1.8, 5) * eye_size
        brows.append(np.stack([ex + spread, eye_y - 1.8 * eye_size - 2 * np.cos(spread / (1.8 * eye_size))], 1))
        # outer (left eye) or inner corner first, then the upper lid (y grows downwards), as iBUG orders them
        eyes.append(_ellipse_points(ex, eye_y, 1.6 * eye_size, eye_size, np.pi + np.arange(6) * np.pi / 3))
    length = person["nose_length"]
    bridge = np.stack([np.full(4, cx), np.linspace(eye_y, cy + length, 4)], 1)
    nostrils = np.stack([cx + np.linspace(-6, 6, 5), np.full(5, cy + 0.9 * length)], 1)
    mouth_y, width = cy + person["mouth_height"], person["mouth_width"]
    outer = _ellipse_points(cx, mouth_y, width, 5, np.pi + np.linspace(0, 2 * np.pi, 12, endpoint=False))
    inner = _ellipse_points(cx, mouth_y, 0.8 * width, 2, np.pi + np.linspace(0, 2 * np.pi, 8, endpoint=False))
    points = np.concatenate([jaw, *brows, bridge, nostrils, *eyes, outer, inner])
    return (points - 0.5).astype(np.float32)  # render_face puts pixel centres at +0.5


def camera(image, rng, strength=1.0):
    """Sensor noise and a slight optical blur, as a camera would add."""
    image = image + rng.normal(0, rng.uniform(0.008, 0.02) * strength, image.shape).astype(np.float32)
    blurred = Image.fromarray(to_uint8(image)).filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 0.7)))
    return np.asarray(blurred, dtype=np.float32) / 255


def to_uint8(image):
    """A float image in [0, 1] as uint8 pixels (clipped, rounded)."""
    return (np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8)


def _blur(image, radius):
    return np.asarray(Image.fromarray(to_uint8(image)).filter(ImageFilter.GaussianBlur(radius)), dtype=np.float32) / 255


def face_swap(rng):
    """A target face whose inner region comes from another identity; returns (image, mask)."""
    target = random_identity(rng)
    source = dict(random_identity(rng), face_center=target["face_center"], face_radii=target["face_radii"],
                  background=target["background"])
    target_image = camera(render_face(target), rng)
    source_image = camera(render_face(source), rng, strength=rng.uniform(0.0, 0.3))
    correction = rng.uniform(0.2, 0.8)
    source_image = source_image + correction * (target["skin"] - source["skin"]).astype(np.float32)
    source_image = _blur(source_image, rng.uniform(0.8, 2.0))
    xx, yy = _grid(SIZE)
    cx, cy = target["face_center"]
    region = _ellipse(xx, yy, cx, cy + rng.uniform(2, 10), target["face_radii"][0] * rng.uniform(0.62, 0.78),
                      target["face_radii"][1] * rng.uniform(0.58, 0.72))
    alpha = _blur(np.repeat(region[..., None], 3, 2), rng.uniform(2, 6))[..., 0]
    image = target_image * (1 - alpha[..., None]) + source_image * alpha[..., None]
    return image, alpha > 0.5


def synthetic_face(rng):
    """A face rendered at half resolution and upsampled with a checkerboard fingerprint; returns (image, mask)."""
    person = random_identity(rng)
    background = camera(render_face(dict(person, face_radii=(1e-3, 1e-3))), rng)
    small = render_face(person, SIZE // 2)
    upsampled = np.asarray(Image.fromarray(to_uint8(small)).resize((SIZE, SIZE), Image.BILINEAR), dtype=np.float32) / 255
    xx, yy = _grid(SIZE)
    checker = ((np.floor(xx) + np.floor(yy)) % 2 * 2 - 1)[..., None]
    upsampled = upsampled * (1 + rng.uniform(0.01, 0.04) * checker)
    upsampled = upsampled + rng.normal(0, 0.004, upsampled.shape).astype(np.float32)
    cx, cy = person["face_center"]
    rx, ry = person["face_radii"]
    region = np.maximum(_ellipse(xx, yy, cx, cy, rx, ry),
                        _ellipse(xx, yy, cx, cy - ry * 0.25, rx * 1.12, ry * person["hair_height"]))
    image = background * (1 - region[..., None]) + upsampled * region[..., None]
    return image, region > 0.5


def _make_image(job):
    kind, split_index, label, index, seed, path, mask_path = job
    rng = np.random.default_rng([seed, list(SPLIT_COUNTS).index(kind), split_index, label, index])
    if label == 0:
        image, mask = camera(render_face(random_identity(rng)), rng), None
    else:
        image, mask = face_swap(rng) if kind == "demo_fakes" else synthetic_face(rng)
    Image.fromarray(to_uint8(image)).save(path, compress_level=1)
    if mask is not None:
        Image.fromarray((mask * 255).astype(np.uint8)).save(mask_path, compress_level=1)


def write_dataset(root, kind="demo_fakes", splits=None, seed=0, workers=None, progress=True):
    """Write one dataset of ``kind`` (a SPLIT_COUNTS name) under ``root``, with ``splits`` as
    {split: (real count, fake count)} (default: that kind's). Returns ``root``."""
    root, splits = Path(root), splits or SPLIT_COUNTS[kind]
    jobs = []
    for split_index, (split, counts) in enumerate(splits.items()):
        for label, (name, count) in enumerate(zip(("real", "fake"), counts)):
            for folder in (name, "masks") if label else (name,):
                (root / split / folder).mkdir(parents=True, exist_ok=True)
            jobs += [(kind, split_index, label, index, seed, root / split / name / f"{index:05d}.png",
                      root / split / "masks" / f"{index:05d}.png") for index in range(count)]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        list(tqdm(pool.map(_make_image, jobs, chunksize=16), total=len(jobs), disable=not progress,
                  desc=f"generating {root.name}"))
    return root


def generate(out="data", seed=0, workers=None):
    """Write both demo datasets under ``out``; a dataset already generated with the same seed is kept."""
    for kind, splits in SPLIT_COUNTS.items():
        root = Path(out) / kind
        manifest = {"version": VERSION, "seed": seed, "splits": {k: list(v) for k, v in splits.items()}}
        manifest_path = root / "manifest.json"
        if manifest_path.is_file() and json.loads(manifest_path.read_text()) == manifest:
            print(f"{root}: already generated (seed {seed})")
            continue
        manifest_path.unlink(missing_ok=True)
        write_dataset(root, kind, splits, seed, workers)
        manifest_path.write_text(json.dumps(manifest, indent=2))
        print(f"{root}: generated (seed {seed})")
