"""Building a dataset of face crops from folders of real and fake photos and videos: sources grouped and
split so that no source is on two sides, faces cropped on several processes, the crops, their landmarks
and the manifest written (``build``); build_faces_dataset.py is its command.
"""
import csv
import json
import os
import random
import shutil
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
from tqdm import tqdm

from fakedetect.data.folders import CLASS_NAMES, LANDMARKS_FILE, SPLITS
from fakedetect.data.images import DatasetError
from fakedetect.faces.detection import FaceCropper, face_track, read_photo
from fakedetect.faces.video import VIDEO_EXTENSIONS, list_sources, video_frames
from fakedetect.io.files import atomic_write

MANIFEST_FIELDS = ("image", "label", "split", "source", "group", "video", "frame",
                   "face_x", "face_y", "face_w", "face_h", "detector", "angle", "status")
STAGING = ".staging"
NEW_BUILD = ".new_build"  # main() builds here, then swaps it in: an earlier build stays whole until then


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
    The frames of a video give one face (detection.face_track): a frame without it is 'no face'."""
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
