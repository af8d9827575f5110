"""One dataset made of the splits of several, as symbolic links, for training on many sources at once.

    python tools/join_datasets.py -o data/sbi_mix \\
        --train data/dfdc_faces/train data/ffhq_faces/train data/ffpp_faces/train --real-only train \\
        --val data/ffpp_faces/val data/dfdc_faces/val --pseudo-fakes val \\
        --test data/ffpp_faces/test

Each ``--train``/``--val``/``--test`` folder is a split (``real/``, ``fake/``, optionally ``landmarks.json``)
of a dataset built by build_faces_dataset.py; its images are linked under
``OUTPUT/{split}/{real,fake}/{dataset}/...`` (``dataset``: the name of the split's parent folder), so two
sources never collide. The landmarks follow (one landmarks.json a split) and so do the manifests' rows,
with the ``video`` column prefixed by the dataset, so video-level metrics still pool a video's crops.

``--real-only SPLIT``: that split links the real images only (training without fakes: the fakes are not
even present). ``--pseudo-fakes SPLIT``: in that split, every real image of a source that has no fakes of
its own gets a self-blended pseudo-fake beside it (self_blend.py, hull-or-ellipse mask, drawn from
``--seed``, written as PNG under ``fake/{dataset}_pseudo/``): a validation set that tells whether the
pseudo-fakes are learnt on held-out faces, next to the real fakes of the sources that have them.
"""
import csv
import json
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from fakedetect.cli.common import ArgumentParser
from fakedetect.data.folders import CLASS_NAMES, LANDMARKS_FILE, SPLITS, FacesDataset
from fakedetect.data.images import load_image
from fakedetect.data.self_blend import self_blend
from fakedetect.io.files import atomic_write

PSEUDO_SUFFIX = "_pseudo"
PSEUDO_CHUNK = 64  # images blended at a time


def manifest_rows(split_folder):
    """{image path under the split: manifest row} of the build that holds ``split_folder`` (empty without one)."""
    manifest = split_folder.parent / "manifest.csv"
    if not manifest.is_file():
        return {}
    with open(manifest, newline="") as f:
        return {row["image"].split("/", 1)[1]: row for row in csv.DictReader(f)
                if row.get("image") and row["image"].startswith(f"{split_folder.name}/")}


def link_split(source, output, split, real_only):
    """Link the images of split folder ``source`` into ``output/split``; returns (landmarks, manifest rows,
    the linked real images as (path under the split, file), whether the source has fakes)."""
    name = source.parent.name
    dataset = FacesDataset(source, require_both_classes=False)
    listed = json.loads((source / LANDMARKS_FILE).read_text()) if (source / LANDMARKS_FILE).is_file() else {}
    rows = manifest_rows(source)
    landmarks, manifest, reals = {}, [], []
    for file, label in zip(dataset.files, dataset.labels):
        if real_only and label == 1:
            continue
        relative = file.relative_to(source).as_posix()
        klass, rest = relative.split("/", 1)
        joined = f"{klass}/{name}/{rest}"
        link = output / split / joined
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(file.resolve())
        if relative in listed:
            landmarks[joined] = listed[relative]
        row = rows.get(relative, {})
        manifest.append({"image": f"{split}/{joined}", "label": CLASS_NAMES[label], "split": split, "source": name,
                         "video": f"{name}/{row['video']}" if row.get("video") else ""})
        if label == 0:
            reals.append((joined, file))
    return landmarks, manifest, reals, any(label == 1 for label in dataset.labels)


def write_pseudo_fakes(output, split, name, reals, landmarks, seed):
    """Self-blended pseudo-fakes of ``reals`` (the linked real images of dataset ``name``) as PNG under
    ``output/split/fake/{name}_pseudo/``; returns their manifest rows."""
    rows, generator = [], torch.Generator().manual_seed(seed)
    for start in range(0, len(reals), PSEUDO_CHUNK):
        chunk = reals[start:start + PSEUDO_CHUNK]
        images = torch.stack([torch.from_numpy(np.array(load_image(file))).permute(2, 0, 1) for _, file in chunk])
        points = torch.full((len(chunk), 68, 2), float("nan"))
        for row, (joined, file) in enumerate(chunk):
            if joined in landmarks:
                with Image.open(file) as image:  # landmarks are in the file's pixels; the images are 256 now
                    scale = torch.tensor([256 / image.size[0], 256 / image.size[1]])
                points[row] = (torch.tensor(landmarks[joined]) + 0.5) * scale - 0.5
        fakes, _, made = self_blend(images, points, generator, mask="hull-or-ellipse")
        for (joined, _), fake, kept in zip(chunk, fakes, made.tolist()):
            if not kept:
                continue
            relative = f"fake/{name}{PSEUDO_SUFFIX}/" + joined.split("/", 2)[2].rsplit(".", 1)[0] + ".png"
            path = output / split / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(path, lambda tmp: Image.fromarray(fake.permute(1, 2, 0).numpy()).save(tmp, format="PNG"))
            rows.append({"image": f"{split}/{relative}", "label": "fake", "split": split,
                         "source": f"{name}{PSEUDO_SUFFIX}", "video": ""})
    return rows


def main(argv=None):
    parser = ArgumentParser(description=__doc__)
    for split in SPLITS:
        parser.add_argument(f"--{split}", nargs="+", type=Path, required=True, metavar="SPLIT_FOLDER",
                            help=f"split folders whose images make the {split} split")
    parser.add_argument("--real-only", nargs="+", choices=SPLITS, default=(), metavar="SPLIT",
                        help="splits that take the real images only")
    parser.add_argument("--pseudo-fakes", nargs="+", choices=SPLITS, default=(), metavar="SPLIT",
                        help="splits where the real images of sources without fakes get a pseudo-fake each")
    parser.add_argument("--seed", type=int, default=0, help="seed of the pseudo-fakes (default: 0)")
    parser.add_argument("-o", "--output", type=Path, required=True, help="the joined dataset's folder (must not exist)")
    args = parser.parse_args(argv)
    for split in SPLITS:
        for folder in getattr(args, split):
            if not (folder / "real").is_dir() and not (folder / "fake").is_dir():
                parser.error(f"--{split} {folder}: not a split folder (no real/ or fake/ in it)")
        names = [folder.parent.name for folder in getattr(args, split)]
        if len(set(names)) < len(names):
            parser.error(f"--{split}: two split folders of datasets with the same name ({', '.join(names)})")
    if args.output.exists():
        parser.error(f"-o {args.output} exists; choose a new folder (a joined dataset never replaces files)")
    manifest = []
    for split in SPLITS:
        landmarks, counts = {}, Counter()
        for folder in getattr(args, split):
            found, rows, reals, has_fakes = link_split(folder, args.output, split, split in args.real_only)
            landmarks.update(found)
            if split in args.pseudo_fakes and not has_fakes:
                rows += write_pseudo_fakes(args.output, split, folder.parent.name, reals, found, args.seed)
            manifest += rows
            counts.update((row["source"], row["label"]) for row in rows)
        for klass in CLASS_NAMES:
            (args.output / split / klass).mkdir(parents=True, exist_ok=True)
        if landmarks:
            text = json.dumps(landmarks, separators=(",", ":"))
            atomic_write(args.output / split / LANDMARKS_FILE, lambda tmp: Path(tmp).write_text(text))
        print(f"{split}: " + ", ".join(f"{source} {count} {label}" for (source, label), count in sorted(counts.items())))
    fields = ("image", "label", "split", "source", "video")

    def write(tmp):
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=fields)
            writer.writeheader()
            writer.writerows(manifest)
    atomic_write(args.output / "manifest.csv", write)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
