"""Turn folders of real and fake photos and videos into the training layout.

    python build_faces_dataset.py --real raw/real --fake raw/fake -o data/my_faces --frames 10

Every photo, and ``--frames`` evenly spaced frames of every video (.mp4 .avi .mov .mkv
.webm .m4v .mpg .mpeg, read with OpenCV), is searched for its largest face (see
face_detection.py: dlib's HOG detector and 68 landmarks when installed, else OpenCV's Haar
cascade; ``--detector`` chooses; square crop enlarged 1.3x, 256x256, eyes levelled first
with ``--align``). The crops are written as PNG to ``<out>/{train,val,test}/{real,fake}/``,
ready for ``train_main.py -d <out>``; with dlib, ``<out>/<split>/landmarks.json`` holds the
68 landmarks of every crop in crop pixels (``faces_dataset.load_landmarks`` reads it).

Splits are made by source so that no source is on two sides: all frames of one video go
to one split, and so does each photo, or with ``--group-by folder`` each sub-folder (one
person's photos; a sub-folder of the same name under --real and --fake, such as
real/id07/ and fake/id07/, is one group). Sources are shuffled with ``--seed`` and cut by
``--ratios`` (train val test, by number of sources) separately for real-only, fake-only
and mixed groups, so every split gets both classes when there are enough sources.

``<out>/manifest.csv`` lists every crop (image, label, split, source, group, frame, face
box in source pixels, detector, rotation angle of --align) and every source or frame where no face was found or the file could
not be read. Exit code: 0 when the dataset was written, 1 when a source was unreadable, a
split was left without real or fake images or a file could not be written (disk full), 2 for
a usage error.
"""
import csv
import json
import os
import random
import shutil
import sys
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
from tqdm import tqdm

from cli import ArgumentParser, exits_on_error
from face_detection import DETECTORS, ENLARGE, FaceCropper, FaceDetectorError, read_photo
from faces_dataset import CLASS_NAMES, IMAGE_EXTENSIONS, LANDMARKS_FILE, SPLITS, DatasetError
from fileio import atomic_write, check_output_path

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg")
MANIFEST_FIELDS = ("image", "label", "split", "source", "group", "frame",
                   "face_x", "face_y", "face_w", "face_h", "detector", "angle", "status")
STAGING = ".staging"
NEW_BUILD = ".new_build"  # main() builds here, then swaps it in: an earlier build stays whole until then
MAX_LISTED = 20


def is_source(path, folder):
    """Whether ``path`` under ``folder`` is a photo or video (hidden files and folders are not)."""
    return (path.suffix.lower() in IMAGE_EXTENSIONS + VIDEO_EXTENSIONS and path.is_file()
            and not any(part.startswith(".") for part in path.relative_to(folder).parts))


def list_sources(folder):
    """Photos and videos under ``folder`` (recursive, sorted; hidden files and folders skipped)."""
    folder = Path(folder)
    return sorted(path for path in folder.rglob("*") if is_source(path, folder))


def frame_indices(total, count):
    """``count`` evenly spaced frame indices of a ``total``-frame video, first and last included."""
    return sorted(set(np.linspace(0, total - 1, min(count, total)).round().astype(int).tolist()))


def video_frames(path, count):
    """``(frame index, RGB uint8 frame)`` for ``count`` evenly spaced frames of a video.

    Frames are decoded in order (reliable for every codec, unlike seeking). Raises
    DatasetError naming the file when OpenCV cannot open or decode it.
    """
    import cv2
    capture = cv2.VideoCapture(str(path))
    total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) if capture.isOpened() else 0
    if capture.isOpened() and total <= 0:
        while capture.grab():
            total += 1
        capture.release()
        capture = cv2.VideoCapture(str(path))
    if not capture.isOpened() or total <= 0:
        capture.release()
        raise DatasetError(f"{path}: cannot read video (OpenCV found no frames); re-encode it (e.g. to H.264 .mp4) or remove it")
    wanted = frame_indices(total, count)
    frames, index = [], 0
    while index <= wanted[-1] and capture.grab():
        if index in wanted:
            ok, frame = capture.retrieve()
            if ok:
                frames.append((index, cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)))
        index += 1
    capture.release()
    if not frames:
        raise DatasetError(f"{path}: cannot decode any frame; re-encode it (e.g. to H.264 .mp4) or remove it")
    return frames


def split_counts(count, ratios):
    """Sources per split for ``count`` sources: largest-remainder rounding of ``ratios``, then one
    source moved from train to each empty val/test split with a positive ratio while train keeps one."""
    counts = [int(count * ratio) for ratio in ratios]
    remainders = sorted(range(len(ratios)), key=lambda i: count * ratios[i] - counts[i], reverse=True)
    for i in remainders[:count - sum(counts)]:
        counts[i] += 1
    for i in (1, 2):
        if ratios[i] > 0 and counts[i] == 0 and counts[0] > 1:
            counts[i], counts[0] = 1, counts[0] - 1
    return counts


def assign_splits(group_labels, ratios, seed):
    """{group: split}. ``group_labels`` maps each group to the set of labels it holds; groups of
    each kind (real only, fake only, both) are shuffled with ``seed`` and cut by ``ratios``."""
    strata = defaultdict(list)
    for group in sorted(group_labels):
        strata[tuple(sorted(group_labels[group]))].append(group)
    assignment = {}
    for kind in sorted(strata):
        groups = strata[kind]
        random.Random(f"{seed}-{kind}").shuffle(groups)
        start = 0
        for split, size in zip(SPLITS, split_counts(len(groups), ratios)):
            assignment.update((group, split) for group in groups[start:start + size])
            start += size
    return assignment


def group_of(label, relative, group_by):
    """The split group of a source: its own path (per class), or its sub-folder (shared by both classes)."""
    if group_by == "folder" and relative.parent != Path("."):
        return relative.parent.as_posix()
    return f"{label}/{relative.as_posix()}"


def crop_source(path, cropper, frames):
    """Manifest rows for one source: one per face found (with the crop as ``crop`` and its landmarks
    in crop pixels as ``landmarks``), one per frame or photo without a face, or a single 'unreadable' row."""
    base = {"source": str(path), "frame": None, "face_box": None, "crop": None, "landmarks": None,
            "detector": cropper.name, "angle": None}
    try:
        images = video_frames(path, frames) if path.suffix.lower() in VIDEO_EXTENSIONS else [(None, read_photo(path))]
    except DatasetError as error:
        return [dict(base, status=f"unreadable: {str(error).removeprefix(f'{path}: ')}")]
    rows = []
    for frame, rgb in images:
        face = cropper.face(rgb)
        rows.append(dict(base, frame=frame, status="no face") if face is None else
                    dict(base, frame=frame, crop=face.crop, face_box=face.box, landmarks=face.landmarks,
                         angle=round(face.angle, 2) if cropper.align else None, status="ok"))
    return rows


def unique_name(name, label, used):
    """``name``, or ``name_2``, ``name_3``, ... when a crop of ``label`` already has it (from
    ``a.jpg`` and ``a.png``, ``a/b.png`` and ``a__b.png``, or frame 12 of ``clip.mp4`` and a
    photo ``clip_f000012.png``): every crop gets its own file. Case-insensitive."""
    candidate, number = name, 1
    while (label, candidate.lower()) in used:
        number += 1
        candidate = f"{name}_{number}"
    used.add((label, candidate.lower()))
    return candidate


def build(real, fake, out, frames=10, ratios=(0.8, 0.1, 0.1), seed=0, group_by="file", cropper=None, progress=True):
    """Build the dataset under ``out``; returns the manifest rows (dicts with MANIFEST_FIELDS)."""
    out = Path(out)
    cropper = cropper or FaceCropper()
    staging = out / STAGING
    rows, used_names = [], set()
    sources = [(label, root, path) for label, root in zip(CLASS_NAMES, (real, fake)) for path in list_sources(root)]
    for label, root, path in tqdm(sources, desc="finding faces", unit="source", disable=not progress, file=sys.stderr):
        relative = path.relative_to(root)
        stem = "__".join(relative.with_suffix("").parts)
        for row in crop_source(path, cropper, frames):
            crop = row.pop("crop")
            row.update(label=label, group=group_of(label, relative, group_by), split=None, image=None)
            if crop is not None:
                name = f"{stem}_f{row['frame']:06d}" if row["frame"] is not None else stem
                row["image"] = Path(label) / f"{unique_name(name, label, used_names)}.png"
                (staging / label).mkdir(parents=True, exist_ok=True)
                atomic_write(staging / row["image"], lambda tmp: crop.save(tmp, format="PNG"))
            rows.append(row)
    group_labels = defaultdict(set)
    for row in rows:
        if row["image"] is not None:
            group_labels[row["group"]].add(row["label"])
    splits = assign_splits(group_labels, ratios, seed)
    for split in SPLITS:
        for label in CLASS_NAMES:
            (out / split / label).mkdir(parents=True, exist_ok=True)
    for row in rows:
        if row["image"] is not None:
            row["split"] = splits[row["group"]]
            target = Path(row["split"]) / row["image"]
            os.replace(staging / row["image"], out / target)
            row["image"] = target.as_posix()
    shutil.rmtree(staging, ignore_errors=True)
    write_landmarks(out, rows)
    write_manifest(out / "manifest.csv", rows)
    return rows


def write_landmarks(out, rows):
    """``<out>/<split>/landmarks.json``: {image path under the split: 68 [x, y] in crop pixels}, for the
    splits whose crops have landmarks (the dlib detector)."""
    for split in SPLITS:
        landmarks = {row["image"].split("/", 1)[1]: np.round(row["landmarks"], 2).tolist() for row in rows
                     if row["split"] == split and row["landmarks"] is not None}
        if landmarks:  # compact: indented JSON would take a line per coordinate
            text = json.dumps(landmarks, separators=(",", ":"))
            atomic_write(out / split / LANDMARKS_FILE, lambda tmp: Path(tmp).write_text(text))


def write_manifest(path, rows):
    def write(tmp):
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=MANIFEST_FIELDS, extrasaction="ignore")
            writer.writeheader()
            for row in rows:
                box = dict(zip(("face_x", "face_y", "face_w", "face_h"), row["face_box"] or [None] * 4))
                writer.writerow({**row, **box})
    atomic_write(path, write)


def parse_args(argv=None):
    parser = ArgumentParser(description=__doc__)
    parser.add_argument("--real", required=True, help="folder of real photos and/or videos (searched recursively)")
    parser.add_argument("--fake", required=True, help="folder of fake photos and/or videos (searched recursively)")
    parser.add_argument("--output", "--out", "-o", required=True,
                        help="dataset folder to create (train/ val/ test/ + manifest.csv); -o and --out are older spellings")
    parser.add_argument("--frames", type=int, default=10, help="evenly spaced frames taken per video (default: 10)")
    parser.add_argument("--ratios", type=float, nargs=3, default=(0.8, 0.1, 0.1), metavar=("TRAIN", "VAL", "TEST"),
                        help="share of sources per split (default: 0.8 0.1 0.1)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the split (default: 0)")
    parser.add_argument("--group-by", choices=("file", "folder"), default="file",
                        help="split unit: each photo/video, or each sub-folder (one identity) (default: file)")
    parser.add_argument("--min-face", type=int, default=32, help="smallest face side in pixels (default: 32)")
    parser.add_argument("--enlarge", type=float, default=ENLARGE, help=f"crop side / face box side (default: {ENLARGE})")
    parser.add_argument("--detector", choices=DETECTORS, default=None,
                        help="face detector: dlib (HOG + 68 landmarks) or haar (OpenCV) (default: dlib when installed)")
    parser.add_argument("--align", action="store_true",
                        help="rotate each face so the eyes are level before cropping (needs the dlib detector)")
    parser.add_argument("--overwrite", action="store_true", help="replace the splits and manifest of an earlier build in --output")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    for name in ("real", "fake"):
        folder = getattr(args, name)
        if not Path(folder).is_dir():
            parser.error(f"--{name} {folder}: folder not found; pass the folder that holds the {name} photos/videos")
        if not any(is_source(path, Path(folder)) for path in Path(folder).rglob("*")):
            parser.error(f"--{name} {folder}: no photos or videos found (looked for "
                         f"{', '.join(IMAGE_EXTENSIONS + VIDEO_EXTENSIONS)}); add some or pass another folder")
    if args.frames < 1:
        parser.error(f"--frames must be >= 1 (got {args.frames})")
    if min(args.ratios) < 0 or args.ratios[0] <= 0 or abs(sum(args.ratios) - 1) > 1e-6:
        parser.error(f"--ratios {' '.join(map(str, args.ratios))}: need three shares >= 0 summing to 1, train > 0")
    if args.enlarge < 1:
        parser.error(f"--enlarge must be >= 1 (got {args.enlarge})")
    check_output_path(parser, "--output", args.output, [args.real, args.fake], folder=True, whole=True)
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


def not_of_an_earlier_build(out):
    """Why ``out`` holds something an earlier build did not make (so --overwrite must not delete it), or None:
    every file under its split folders must be a crop its manifest.csv lists, or a split's landmarks file."""
    manifest = out / "manifest.csv"
    try:
        with open(manifest, newline="") as f:
            rows = list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error):
        rows = None
    if not rows and any((out / split).exists() for split in SPLITS) or rows and set(rows[0]) - set(MANIFEST_FIELDS):
        return f"its split folders are not listed by a manifest.csv of build_faces_dataset.py ({manifest})"
    made = {Path(row["image"]) for row in rows or () if row.get("status") == "ok"}  # under the output folder
    made |= {Path(split) / LANDMARKS_FILE for split in SPLITS}
    for split in SPLITS:
        for path in sorted((out / split).rglob("*")):
            if path.is_file() or path.is_symlink():
                if path.relative_to(out) not in made:
                    return f"{path} was not made by the earlier build (its manifest.csv does not list it)"
    return None


@exits_on_error()
def main(argv=None):
    args = parse_args(argv)
    try:
        cropper = FaceCropper(min_face=args.min_face, enlarge=args.enlarge, detector=args.detector, align=args.align)
    except FaceDetectorError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if cropper.note:
        print(cropper.note, file=sys.stderr)
    new_build = Path(args.output) / NEW_BUILD
    shutil.rmtree(new_build, ignore_errors=True)  # left by a build that was killed
    rows = build(args.real, args.fake, new_build, args.frames, args.ratios, args.seed, args.group_by, cropper,
                 progress=not args.no_progress)
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
    empty = [f"{split}/{label}" for split, ratio in zip(SPLITS, args.ratios) if ratio > 0
             for label in CLASS_NAMES if images[split, label] == 0]
    if empty:
        print(f"error: no images in {', '.join(empty)}; train_main.py needs real and fake images in every split: "
              "add sources (faces) or change --ratios", file=sys.stderr)
    return 1 if unreadable or empty else 0


if __name__ == "__main__":
    sys.exit(main())
