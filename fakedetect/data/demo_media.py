"""Raw material for trying build_faces_dataset.py: photos and short videos of drawn faces (``write_media``),
real and face-swapped as in the demo datasets; demo_media.py is its command."""
from pathlib import Path

import numpy as np
from PIL import Image

from fakedetect.data import demo

CANVAS = (480, 360)
FPS = 10


def draw_face(label, rng):
    """One 256x256 uint8 face: a drawn person (real) or a face swap (fake)."""
    if label == "real":
        image = demo.camera(demo.render_face(demo.random_identity(rng)), rng)
    else:
        image, _ = demo.face_swap(rng)
    return demo.to_uint8(image)


def place(face, side, background, offset):
    """``face`` resized to ``side`` pixels and pasted at ``offset`` (fractions of the free room) on a plain canvas."""
    canvas = Image.new("RGB", CANVAS, background)
    x, y = (int(fraction * max(0, room - side)) for fraction, room in zip(offset, CANVAS))
    canvas.paste(Image.fromarray(face).resize((side, side), Image.BILINEAR), (x, y))
    return canvas


def layout(rng):
    """A random face size (205-307 pixels) and background colour."""
    return int(256 * rng.uniform(0.8, 1.2)), tuple(int(v) for v in rng.integers(40, 220, 3))


def write_video(path, frames):
    """Write same-size RGB PIL frames as an .mp4 (mp4v) with OpenCV."""
    import cv2
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), FPS, frames[0].size)
    if not writer.isOpened():
        raise RuntimeError(f"{path}: OpenCV cannot write mp4v video here; install opencv-python-headless (< 5)")
    for frame in frames:
        writer.write(cv2.cvtColor(np.asarray(frame), cv2.COLOR_RGB2BGR))
    writer.release()


def write_media(out, photos=12, videos=4, frames=20, seed=0):
    """Write ``out/{real,fake}/`` photos and videos; returns ``out``."""
    out = Path(out)
    for label in ("real", "fake"):
        (out / label).mkdir(parents=True, exist_ok=True)
        for index in range(photos):
            rng = np.random.default_rng([seed, label == "fake", 0, index])
            face = draw_face(label, rng)
            place(face, *layout(rng), rng.uniform(0, 1, 2)).save(out / label / f"photo_{index:03d}.png")
        for index in range(videos):
            rng = np.random.default_rng([seed, label == "fake", 1, index])
            face, (side, background) = draw_face(label, rng), layout(rng)
            start, end = rng.uniform(0, 1, 2), rng.uniform(0, 1, 2)
            clip = [place(face, side, background, start + step * (end - start)) for step in np.linspace(0, 1, frames)]
            write_video(out / label / f"video_{index:03d}.mp4", clip)
    return out
