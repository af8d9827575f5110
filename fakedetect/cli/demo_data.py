"""Generate the two embedded demo datasets, deterministically from a seed.

* ``demo_fakes`` (face-swap style): the inner face (eyes, nose, mouth) of one procedurally
  drawn identity is pasted onto another, colour-corrected only partly, re-blurred and
  blended with a feathered mask: the blending boundary, colour and noise mismatch are the tells.
  Its test split is 2:1 real:fake, like the course's deepfake test set.
* ``demo_synthetic`` (generator style): the face is rendered at half resolution and
  upsampled by a "generator" that leaves a periodic (checkerboard) spectral fingerprint
  and no camera noise, on top of a normally rendered background.

Layout: ``{out}/{name}/{train,val,test}/{real,fake}/NNNNN.png`` plus the ground-truth
manipulation mask of every fake in ``{split}/masks/NNNNN.png`` (255 = manipulated) and a
``manifest.json``. Usage: ``python demo_data.py [--output data] [--seed 0] [--workers N]``.
"""
from fakedetect.cli.common import ArgumentParser
from fakedetect.data.demo import generate


def main(argv=None):
    parser = ArgumentParser(description=__doc__)
    parser.add_argument("--output", "--out", default="data", help="folder to write demo_fakes/ and demo_synthetic/ into (default: data)")
    parser.add_argument("--seed", type=int, default=0, help="generation seed (default: 0)")
    parser.add_argument("--workers", type=int, default=None, help="processes (default: all CPU cores)")
    args = parser.parse_args(argv)
    if args.workers is not None and args.workers < 1:
        parser.error(f"--workers must be >= 1 (got {args.workers})")
    generate(args.output, args.seed, args.workers)
