"""Face-detection recall: in how many photos or video frames does each detector find a face?

    python tools/check_detection_recall.py DIR [DIR ...] --frames 8 --pad 0 0.25 --max-upsample 0 1 2

Every photo, and ``--frames`` evenly spaced frames of every video (the frames and decoder of
build_faces_dataset.py), under each folder is searched by each detector setting: Haar, dlib
without the Haar fallback for each ``--max-upsample`` (dlib upsamples only while nothing is
found; see face_detection.DlibDetector), and dlib as build_faces_dataset.py runs it; each on
the image as is and padded with a black border of each ``--pad`` fraction of its longer side
on every side (tight crops cut the face at the border,
which a sliding-window detector may need to see). One row per folder and setting: images
searched, faces found, recall (found / images) and the detection wall time per image
(decoding excluded; dlib's includes its 68 landmarks). Every folder is assumed to show one
face per image, so recall is the share of images with at least one face of ``--min-face`` pixels.
"""
import argparse
import sys
import time
from pathlib import Path

import numpy as np

from fakedetect.data.images import DatasetError
from fakedetect.faces.detection import MAX_UPSAMPLE, DlibDetector, FaceDetectorError, HaarDetector, read_photo
from fakedetect.faces.video import VIDEO_EXTENSIONS, list_sources, video_frames


def images_of(folder, frames, limit):
    """``(name, RGB array)`` for the photos and the video frames under ``folder`` (first ``limit`` sources)."""
    for path in list_sources(folder)[:limit]:
        try:
            if path.suffix.lower() in VIDEO_EXTENSIONS:
                for index, rgb in video_frames(path, frames):
                    yield f"{path}#{index}", rgb
            else:
                yield str(path), read_photo(path)
        except DatasetError as error:
            print(f"skipped: {error}", file=sys.stderr)


def padded(rgb, fraction):
    """``rgb`` with a black border of ``fraction`` of its longer side on every side."""
    border = round(fraction * max(rgb.shape[:2]))
    return np.pad(rgb, ((border, border), (border, border), (0, 0))) if border else rgb


def settings(args):
    """``(label, detector)`` for every detector setting asked for."""
    found = [("haar", HaarDetector())]
    try:
        found += [(f"dlib up<={upsample}", DlibDetector(max_upsample=upsample, haar_fallback=False))
                  for upsample in args.max_upsample]
        found.append((f"dlib default (up<={MAX_UPSAMPLE}, haar fallback)", DlibDetector()))
    except FaceDetectorError as error:
        print(f"note: {error}; dlib rows left out", file=sys.stderr)
    return found


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folders", nargs="+", help="folders of photos and/or videos (searched recursively)")
    parser.add_argument("--frames", type=int, default=8, help="evenly spaced frames per video (default: 8)")
    parser.add_argument("--limit", type=int, default=None, help="first N sources of each folder (default: all)")
    parser.add_argument("--pad", type=float, nargs="+", default=[0.0], help="border fractions to try (default: 0)")
    parser.add_argument("--max-upsample", type=int, nargs="+", default=[2], help="dlib upsampling limits (default: 2)")
    parser.add_argument("--min-face", type=int, default=32, help="smallest face side in pixels (default: 32)")
    args = parser.parse_args(argv)
    for folder in args.folders:
        if not Path(folder).is_dir():
            parser.error(f"{folder}: folder not found; pass folders of photos or videos")
    detectors = settings(args)
    print("| folder | detector | pad | images | found | recall | ms/image |")
    print("|---|---|---|---|---|---|---|")
    for folder in args.folders:
        images = list(images_of(folder, args.frames, args.limit))
        for pad in args.pad:
            for label, detector in detectors:
                found, start = 0, time.perf_counter()
                for _, rgb in images:
                    found += bool(detector.faces(padded(rgb, pad), args.min_face))
                milliseconds = 1000 * (time.perf_counter() - start) / max(1, len(images))
                recall = found / len(images) if images else float("nan")
                print(f"| {Path(folder).name} | {label} | {pad:g} | {len(images)} | {found} | {recall:.3f} | "
                      f"{milliseconds:.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
