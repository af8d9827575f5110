"""Raw material for trying build_faces_dataset.py: photos and short videos of drawn faces.

    python demo_media.py --out raw

Writes ``raw/real/`` (drawn faces as a camera would see them) and ``raw/fake/`` (face-swap
fakes, as in demo_data.py), each with ``--photos`` photos (a face pasted at a random place
and size on a larger canvas, .png) and ``--videos`` videos (a face drifting across the
frame, .mp4 written with OpenCV). Deterministic for a given ``--seed``. The faces are
drawn, so OpenCV's detector misses some of them: build_faces_dataset.py lists those.
"""
import sys

from fakedetect.cli.common import ArgumentParser
from fakedetect.data.demo_media import write_media


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
