"""Raw material for trying build_faces_dataset.py: photos and short videos of drawn faces.

    python demo_media.py --out raw

Writes ``raw/real/`` (drawn faces as a camera would see them) and ``raw/fake/`` (face-swap
fakes, as in demo_data.py), each with ``--photos`` photos (a face pasted at a random place
and size on a larger canvas, .png) and ``--videos`` videos (a face drifting across the
frame, .mp4 written with OpenCV). Deterministic for a given ``--seed``. The faces are
drawn, so OpenCV's detector misses some of them: build_faces_dataset.py lists those.
"""
import sys
from pathlib import Path

import numpy as np
from PIL import Image

import demo_data
from cli import ArgumentParser

CANVAS = (480, 360)
FPS = 10


def draw_face(label, rng):
    """One 256x256 uint8 face: a drawn person (real) or a face swap (fake)."""
    if label == "real":
        image = demo_data.camera(demo_data.render_face(demo_data.random_identity(rng)), rng)
    else:
        image, _ = demo_data.face_swap(rng)
    return demo_data.to_uint8(image)


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


def main(argv=None):
    parser = ArgumentParser(description=__doc__)
    parser.add_argument("--output", "--out", default="raw", help="output folder (default: raw; --out: the older spelling)")
    parser.add_argument("--photos", type=int, default=12, help="photos per class (default: 12)")
    parser.add_argument("--videos", type=int, default=4, help="videos per class (default: 4)")
    parser.add_argument("--frames", type=int, default=20, help="frames per video (default: 20)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    args = parser.parse_args(argv)
    for flag, value in (("--photos", args.photos), ("--videos", args.videos), ("--frames", args.frames)):
        if value < (1 if flag == "--frames" else 0):
            parser.error(f"{flag} must be >= {1 if flag == '--frames' else 0} (got {value})")
    try:
        write_media(args.output, args.photos, args.videos, args.frames, args.seed)
    except RuntimeError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"wrote {args.photos} photos and {args.videos} videos per class under {args.output}/real and {args.output}/fake")
    return 0


if __name__ == "__main__":
    sys.exit(main())
