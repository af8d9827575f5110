"""A view of a dataset built from several manipulation methods (FaceForensics++'s Deepfakes, Face2Face,
FaceSwap, ...), made of symbolic links: every real crop, and the fakes of the chosen methods only.

    python tools/method_views.py data/ffpp_faces --methods Deepfakes -o data/ffpp_deepfakes
    python tools/method_views.py data/ffpp_faces --methods Deepfakes --test-methods Face2Face FaceSwap \\
        -o data/ffpp_train_deepfakes

A fake's method is the first folder of its source video under the fake folder of the build (its manifest's
``video`` column, ``fake/Deepfakes/033_097.mp4``). The view keeps the build's splits (so identities stay on
one side), its landmarks and a manifest of the crops it holds, so video-level metrics, self-blending and
cross_dataset.py work on it as on the build.
"""
import csv
import sys
from collections import Counter
from pathlib import Path

from fakedetect.cli.common import ArgumentParser
from fakedetect.data.folders import LANDMARKS_FILE, SPLITS
from fakedetect.io.files import atomic_write


def method_of(row):
    """The manipulation method of a manifest row of a fake crop (None for a real one or a photo)."""
    parts = row.get("video", "").split("/")
    return parts[1] if row["label"] == "fake" and len(parts) > 2 else None


def write_rows(path, fieldnames, rows):
    def write(tmp):
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=fieldnames)
            writer.writeheader()
            writer.writerows(rows)
    atomic_write(path, write)


def main(argv=None):
    parser = ArgumentParser(description=__doc__)
    parser.add_argument("dataset", type=Path, help="a dataset written by build_faces_dataset.py (with manifest.csv)")
    parser.add_argument("--methods", nargs="+", required=True, help="the methods whose fakes the view keeps")
    for split in SPLITS:
        parser.add_argument(f"--{split}-methods", nargs="+", default=None, metavar="METHOD",
                            help=f"the methods of the {split} split's fakes (default: --methods)")
    parser.add_argument("-o", "--output", type=Path, required=True, help="the view's folder (must not exist)")
    args = parser.parse_args(argv)
    manifest = args.dataset / "manifest.csv"
    if not manifest.is_file():
        parser.error(f"{manifest} not found; pass a dataset written by build_faces_dataset.py")
    if args.output.exists():
        parser.error(f"-o {args.output} exists; choose a new folder (a view never replaces files)")
    with open(manifest, newline="") as f:
        reader = csv.DictReader(f)
        rows = [row for row in reader if row.get("image")]
    found = Counter(method_of(row) for row in rows) - Counter({None: len(rows)})
    wanted = {split: set(getattr(args, f"{split}_methods") or args.methods) for split in SPLITS}
    unknown = sorted(set().union(*wanted.values()) - found.keys())
    if unknown:
        parser.error(f"{manifest}: no fakes of {', '.join(unknown)} (its methods: {', '.join(sorted(found))})")
    kept = [row for row in rows if row["label"] == "real" or method_of(row) in wanted[row["split"]]]
    for row in kept:
        link = args.output / row["image"]
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to((args.dataset / row["image"]).resolve())
    for split in SPLITS:
        if (args.dataset / split / LANDMARKS_FILE).is_file():
            text = (args.dataset / split / LANDMARKS_FILE).read_text()  # lookups are by the crop's path: kept whole
            atomic_write(args.output / split / LANDMARKS_FILE, lambda tmp: Path(tmp).write_text(text))
    write_rows(args.output / "manifest.csv", reader.fieldnames, kept)
    for split in SPLITS:
        counts = Counter(row["label"] for row in kept if row["split"] == split)
        print(f"{split}: {counts['real']} real, {counts['fake']} fake ({', '.join(sorted(wanted[split]))})")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
