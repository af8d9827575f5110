"""Turn folders of real and fake photos and videos into the training layout.

    python build_faces_dataset.py --real raw/real --fake raw/fake -o data/my_faces --frames 10

Every photo, and ``--frames`` evenly spaced frames (or ``--fps`` frames a second) of every
video (.mp4 .avi .mov .mkv .webm .m4v .mpg .mpeg, read with OpenCV), is searched for its
largest face; in a video, the faces are linked from frame to frame (by box overlap, else
centre distance) and the one seen in the most frames is cropped (fakedetect.faces.detection.face_track),
so a passer-by does not replace the speaker (see
fakedetect/faces/detection.py: dlib's HOG detector and 68 landmarks when installed, else OpenCV's Haar
cascade; ``--detector`` chooses; square crop enlarged 1.3x, 256x256, eyes levelled first
with ``--align``). The crops are written as PNG to ``<out>/{train,val,test}/{real,fake}/``,
ready for ``train_main.py -d <out>``; with dlib, ``<out>/<split>/landmarks.json`` holds the
68 landmarks of every crop in crop pixels (``fakedetect.data.folders.load_landmarks`` reads it).

Splits are made by source so that no source is on two sides: all frames of one video go
to one split, and so does each photo, or with ``--group-by folder`` each sub-folder (one
person's photos; a sub-folder of the same name under --real and --fake, such as
real/id07/ and fake/id07/, is one group), or with ``--group-by pair`` each set of files joined
by the ids in their names (split on '_': FaceForensics++'s fake ``033_097.mp4`` goes with
``033.mp4`` and ``097.mp4``, and transitively with every file sharing an id with them);
``--groups CSV`` (columns file,group) names the group of the files it lists. Sources are
shuffled with ``--seed`` and cut by ``--ratios`` (train val test, by number of sources)
separately for real-only, fake-only and mixed groups, so every split gets both classes when
there are enough sources.

The work is spread over ``--workers`` processes (default: every core), the output the same
whatever their number.

``<out>/manifest.csv`` lists every crop (image, label, split, source, group, video (class/path
of the source video, empty for photos), frame, face
box in source pixels, detector, rotation angle of --align) and every source or frame where no face was found or the file could
not be read. Exit code: 0 when the dataset was written, 1 when a source was unreadable, a
split was left without real or fake images or a file could not be written (disk full), 2 for
a usage error.
"""
import os
import shutil
import sys
from collections import Counter
from pathlib import Path

from fakedetect.cli.common import ArgumentParser, exits_on_error
from fakedetect.data.folders import CLASS_NAMES, SPLITS
from fakedetect.data.images import IMAGE_EXTENSIONS, DatasetError
from fakedetect.faces.build import NEW_BUILD, STAGING, build, default_workers, not_of_an_earlier_build, read_groups
from fakedetect.faces.detection import DETECTORS, ENLARGE, FaceCropper, FaceDetectorError
from fakedetect.faces.video import VIDEO_EXTENSIONS, is_source
from fakedetect.io.files import check_output_path

MAX_LISTED = 20  # sources without a face listed by name


def parse_args(argv=None):
    parser = ArgumentParser(description=__doc__)
    parser.add_argument("--real", required=True, help="folder of real photos and/or videos (searched recursively)")
    parser.add_argument("--fake", default=None,
                        help="folder of fake photos and/or videos (searched recursively); without it the dataset holds "
                             "real faces only (for train_main.py --real-only, or to be joined with fakes)")
    parser.add_argument("--output", "--out", "-o", required=True,
                        help="dataset folder to create (train/ val/ test/ + manifest.csv); -o and --out are older spellings")
    parser.add_argument("--frames", type=int, default=10, help="evenly spaced frames taken per video (default: 10)")
    parser.add_argument("--fps", type=float, default=None,
                        help="take this many frames per second of each video instead of --frames")
    parser.add_argument("--workers", type=int, default=default_workers(),
                        help=f"processes finding faces (default: the {default_workers()} CPU cores)")
    parser.add_argument("--groups", metavar="CSV", default=None,
                        help="CSV with columns file,group: the split group of each file listed (path under "
                             "--real/--fake or file name); files not listed follow --group-by")
    parser.add_argument("--ratios", type=float, nargs=3, default=(0.8, 0.1, 0.1), metavar=("TRAIN", "VAL", "TEST"),
                        help="share of sources per split (default: 0.8 0.1 0.1)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the split (default: 0)")
    parser.add_argument("--group-by", choices=("file", "folder", "pair"), default="file",
                        help="split unit: each photo/video, each sub-folder (one identity), or each set of files "
                             "joined by the ids of pair-named fakes (A_B with A and B) (default: file)")
    parser.add_argument("--min-face", type=int, default=32, help="smallest face side in pixels (default: 32)")
    parser.add_argument("--enlarge", type=float, default=ENLARGE, help=f"crop side / face box side (default: {ENLARGE})")
    parser.add_argument("--detector", choices=DETECTORS, default=None,
                        help="face detector: dlib (HOG + 68 landmarks) or haar (OpenCV) (default: dlib when installed)")
    parser.add_argument("--align", action="store_true",
                        help="rotate each face so the eyes are level before cropping (needs the dlib detector)")
    parser.add_argument("--as-crops", action="store_true",
                        help="the photos are face crops already (e.g. DFDC's): keep each whole (squared, resized), "
                             "with the landmarks of the face found in it; a photo without a face is left out")
    parser.add_argument("--overwrite", action="store_true", help="replace the splits and manifest of an earlier build in --output")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    for name in ("real", "fake"):
        folder = getattr(args, name)
        if folder is None:
            continue
        if not Path(folder).is_dir():
            parser.error(f"--{name} {folder}: folder not found; pass the folder that holds the {name} photos/videos")
        if not any(is_source(path, Path(folder)) for path in Path(folder).rglob("*")):
            parser.error(f"--{name} {folder}: no photos or videos found (looked for "
                         f"{', '.join(IMAGE_EXTENSIONS + VIDEO_EXTENSIONS)}); add some or pass another folder")
    if args.frames < 1:
        parser.error(f"--frames must be >= 1 (got {args.frames})")
    if args.fps is not None and not args.fps > 0:
        parser.error(f"--fps must be > 0 (got {args.fps})")
    if args.workers < 1:
        parser.error(f"--workers must be >= 1 (got {args.workers})")
    if args.groups is not None and not Path(args.groups).is_file():
        parser.error(f"--groups {args.groups}: file not found; pass a CSV with columns file,group")
    if min(args.ratios) < 0 or args.ratios[0] <= 0 or abs(sum(args.ratios) - 1) > 1e-6:
        parser.error(f"--ratios {' '.join(map(str, args.ratios))}: need three shares >= 0 summing to 1, train > 0")
    if args.enlarge < 1:
        parser.error(f"--enlarge must be >= 1 (got {args.enlarge})")
    if args.as_crops and args.align:
        parser.error("--as-crops keeps each photo whole, so it cannot be aligned; drop --align")
    check_output_path(parser, "--output", args.output, [folder for folder in (args.real, args.fake) if folder],
                      folder=True, whole=True)
    out = Path(args.output)
    earlier = [out / name for name in (*SPLITS, "manifest.csv", STAGING, NEW_BUILD) if (out / name).exists()]
    if earlier and not args.overwrite:
        parser.error(f"{earlier[0]} exists from an earlier build; pass --overwrite to replace it or choose another --output")
    if earlier:
        problem = not_of_an_earlier_build(out)
        if problem:
            parser.error(f"--output {out}: {problem}; nothing was deleted: move it away or choose another --output")
    args.earlier = earlier
    return args


@exits_on_error()
def main(argv=None):
    args = parse_args(argv)
    try:
        cropper = FaceCropper(min_face=args.min_face, enlarge=args.enlarge, detector=args.detector, align=args.align,
                              whole=args.as_crops)
    except FaceDetectorError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if cropper.note:
        print(cropper.note, file=sys.stderr)
    new_build = Path(args.output) / NEW_BUILD
    shutil.rmtree(new_build, ignore_errors=True)  # left by a build that was killed
    try:
        groups = read_groups(args.groups) if args.groups else None
        rows = build(args.real, args.fake, new_build, args.frames, args.ratios, args.seed, args.group_by, cropper,
                     progress=not args.no_progress, fps=args.fps, workers=args.workers, groups=groups)
    except DatasetError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for path in args.earlier:  # replaced only once the new build is whole
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    for name in (*SPLITS, "manifest.csv"):
        os.replace(new_build / name, Path(args.output) / name)
    new_build.rmdir()
    crops = [row for row in rows if row["status"] == "ok"]
    missing = [row for row in rows if row["status"] == "no face"]
    unreadable = [row for row in rows if row["status"].startswith("unreadable")]
    images = Counter((row["split"], row["label"]) for row in crops)
    sources = {split: len({row["group"] for row in crops if row["split"] == split}) for split in SPLITS}
    print(f"{'split':<6} {'real':>6} {'fake':>6} {'groups':>7}")
    for split in SPLITS:
        print(f"{split:<6} {images[split, 'real']:>6} {images[split, 'fake']:>6} {sources[split]:>7}")
    print(f"{len(crops)} face crops written to {args.output}; manifest: {Path(args.output) / 'manifest.csv'}")
    if missing:
        print(f"no face found in {len(missing)} photo(s)/frame(s):")
        for row in missing[:MAX_LISTED]:
            print(f"  {row['source']}" + (f" frame {row['frame']}" if row["frame"] is not None else ""))
        if len(missing) > MAX_LISTED:
            print(f"  ... and {len(missing) - MAX_LISTED} more (status 'no face' in manifest.csv)")
    for row in unreadable:
        print(f"error: {row['source']}: {row['status']}", file=sys.stderr)
    labels = CLASS_NAMES if args.fake is not None else CLASS_NAMES[:1]
    empty = [f"{split}/{label}" for split, ratio in zip(SPLITS, args.ratios) if ratio > 0
             for label in labels if images[split, label] == 0]
    if empty:
        print(f"error: no images in {', '.join(empty)}; train_main.py needs real and fake images in every split: "
              "add sources (faces) or change --ratios", file=sys.stderr)
    return 1 if unreadable or empty else 0
