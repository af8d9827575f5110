"""Turn folders of real and fake photos and videos into the training layout.

    python build_faces_dataset.py --real raw/real --fake raw/fake -o data/my_faces --frames 10

Every photo, and ``--frames`` evenly spaced frames (or ``--fps`` frames a second) of every
video (.mp4 .avi .mov .mkv .webm .m4v .mpg .mpeg, read with OpenCV), is searched for its
largest face; in a video, the faces are linked from frame to frame (by box overlap, else
centre distance) and the one seen in the most frames is cropped (face_detection.face_track),
so a passer-by does not replace the speaker (see
face_detection.py: dlib's HOG detector and 68 landmarks when installed, else OpenCV's Haar
cascade; ``--detector`` chooses; square crop enlarged 1.3x, 256x256, eyes levelled first
with ``--align``). The crops are written as PNG to ``<out>/{train,val,test}/{real,fake}/``,
ready for ``train_main.py -d <out>``; with dlib, ``<out>/<split>/landmarks.json`` holds the
68 landmarks of every crop in crop pixels (``faces_dataset.load_landmarks`` reads it).

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
from face_detection import DETECTORS, ENLARGE, FaceCropper, FaceDetectorError, face_track, read_photo
from faces_dataset import CLASS_NAMES, IMAGE_EXTENSIONS, LANDMARKS_FILE, SPLITS, DatasetError
from fileio import atomic_write, check_output_path

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg")
MANIFEST_FIELDS = ("image", "label", "split", "source", "group", "video", "frame",
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


def frame_indices_at_fps(total, video_fps, fps):
    """The indices of a ``total``-frame video at ``video_fps`` taken ``fps`` times a second, from the first frame
    (every frame when ``fps`` is at least the video's)."""
    return sorted(set(np.arange(0, total, max(1.0, video_fps / fps)).round().astype(int).clip(0, total - 1).tolist()))


def video_frames(path, count, fps=None):
    """``(frame index, RGB uint8 frame)`` for ``count`` evenly spaced frames of a video, or, with ``fps``,
    ``fps`` frames per second of it.

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
    if fps is None:
        wanted = frame_indices(total, count)
    else:
        video_fps = capture.get(cv2.CAP_PROP_FPS)
        if not video_fps > 0:
            capture.release()
            raise DatasetError(f"{path}: the video does not say its frame rate; "
                               "sample it with --frames instead of --fps")
        wanted = frame_indices_at_fps(total, video_fps, fps)
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


def pair_groups(stems):
    """{stem: group} joining every file stem with each id in it, ids being the stem split on '_'
    (FaceForensics++ names a fake of scene A with face B ``A_B``): ``A``, ``B``, ``A_B`` and, transitively,
    ``B_C`` and ``C`` are one group (union-find over the ids), named ``pair/`` + its smallest id."""
    parent = {}

    def root(name):
        while parent.setdefault(name, name) != name:
            parent[name] = parent[parent[name]]  # path halving keeps the chains short
            name = parent[name]
        return name

    for stem in stems:
        ids = stem.split("_")
        for other in ids[1:]:
            first, second = sorted((root(ids[0]), root(other)))
            parent[second] = first  # the smaller id stays the root, so a group is named by its smallest id
    return {stem: f"pair/{root(stem.split('_')[0])}" for stem in stems}


def read_groups(path):
    """{file: group} from a CSV with columns ``file`` and ``group``; ``file`` is a path under --real or --fake
    (``clips/a.mp4``) or a bare file name. Raises DatasetError naming the file when it is malformed."""
    try:
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            if not {"file", "group"} <= set(reader.fieldnames or ()):
                raise DatasetError(f"{path}: needs the columns file,group (found {', '.join(reader.fieldnames or ())})")
            groups = {}
            for line, row in enumerate(reader, 2):
                if not row["file"] or not row["group"]:
                    raise DatasetError(f"{path}: line {line} has an empty file or group")
                groups[row["file"]] = row["group"]
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise DatasetError(f"{path}: cannot read ({error}); pass a CSV with columns file,group") from None
    return groups


def source_groups(sources, group_by, explicit=None):
    """{(label, path): split group} for ``(label, root, path)`` sources: ``explicit`` ({file: group}, see
    read_groups) first, by relative path then file name, else the ``group_by`` rule (file, folder or pair)."""
    pairs = pair_groups(sorted({path.stem for _, _, path in sources})) if group_by == "pair" else {}
    groups = {}
    for label, root, path in sources:
        relative = path.relative_to(root)
        named = explicit and (explicit.get(relative.as_posix()) or explicit.get(path.name))
        groups[label, path] = (f"listed/{named}" if named else pairs[path.stem] if group_by == "pair"
                               else group_of(label, relative, group_by))
    return groups


def crop_source(path, cropper, frames, fps=None):
    """Manifest rows for one source: one per face found (with the crop as ``crop`` and its landmarks
    in crop pixels as ``landmarks``), one per frame or photo without a face, or a single 'unreadable' row.
    The frames of a video give one face (face_detection.face_track): a frame without it is 'no face'."""
    base = {"source": str(path), "frame": None, "face_box": None, "crop": None, "landmarks": None,
            "detector": cropper.name, "angle": None}
    is_video = path.suffix.lower() in VIDEO_EXTENSIONS
    try:
        images = video_frames(path, frames, fps) if is_video else [(None, read_photo(path))]
    except DatasetError as error:
        return [dict(base, status=f"unreadable: {str(error).removeprefix(f'{path}: ')}")]
    tracked = face_track([cropper.faces(rgb) for _, rgb in images]) if is_video else [None]
    rows = []
    for (frame, rgb), found in zip(images, tracked):
        if is_video:
            face = None if found is None else cropper.face(rgb, found)
        else:
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


def default_workers():
    """The CPU cores this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


_worker_cropper = None  # each worker process's own FaceCropper (set by start_worker)


def start_worker(cropper):
    global _worker_cropper
    import cv2
    cv2.setNumThreads(1)  # one process per core already: OpenCV's own threads would only compete
    _worker_cropper = cropper


def crop_in_worker(job):
    path, frames, fps = job
    return crop_source(path, _worker_cropper, frames, fps)


def cropped_sources(paths, cropper, frames, fps, workers):
    """``crop_source`` of every path, in the order of ``paths`` whatever the number of ``workers`` (processes,
    each with its own ``cropper``, rebuilt from its settings)."""
    if workers <= 1 or len(paths) <= 1:
        yield from (crop_source(path, cropper, frames, fps) for path in paths)
        return
    import multiprocessing
    # spawned, not forked: a fork of a process that has used OpenCV's or OpenMP's threads can hang in them
    context = multiprocessing.get_context("spawn")
    with context.Pool(min(workers, len(paths)), start_worker, (cropper,)) as pool:
        yield from pool.imap(crop_in_worker, [(path, frames, fps) for path in paths])  # imap keeps the order


def build(real, fake, out, frames=10, ratios=(0.8, 0.1, 0.1), seed=0, group_by="file", cropper=None, progress=True,
          fps=None, workers=1, groups=None):
    """Build the dataset under ``out``; returns the manifest rows (dicts with MANIFEST_FIELDS).

    ``fps``: sample videos at this rate instead of ``frames`` evenly spaced frames; ``workers``: processes
    finding faces; ``groups``: {file: group} (read_groups) before the ``group_by`` rule. Raises DatasetError
    when an entry of ``groups`` names no source.
    """
    out = Path(out)
    cropper = cropper or FaceCropper()
    staging = out / STAGING
    rows, used_names = [], set()
    sources = [(label, root, path) for label, root in zip(CLASS_NAMES, (real, fake)) if root is not None
               for path in list_sources(root)]
    if groups:
        named = {name for _, root, path in sources for name in (path.relative_to(root).as_posix(), path.name)}
        unused = sorted(set(groups) - named)
        if unused:
            raise DatasetError(f"the --groups file lists {len(unused)} file(s) not found under --real or --fake "
                               f"(first: {unused[0]}); fix the paths (relative to --real/--fake) or the file names")
    source_group = source_groups(sources, group_by, groups)
    cropped = cropped_sources([path for _, _, path in sources], cropper, frames, fps, workers)
    for (label, root, path), source_rows in tqdm(zip(sources, cropped), total=len(sources), desc="finding faces",
                                                 unit="source", disable=not progress, file=sys.stderr):
        relative = path.relative_to(root)
        stem = "__".join(relative.with_suffix("").parts)
        video = f"{label}/{relative.as_posix()}" if path.suffix.lower() in VIDEO_EXTENSIONS else None
        for row in source_rows:
            crop = row.pop("crop")
            row.update(label=label, group=source_group[label, path], video=video, split=None, image=None)
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


if __name__ == "__main__":
    sys.exit(main())
