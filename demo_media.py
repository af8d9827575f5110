"""Photos and videos of drawn faces for build_faces_dataset.py: ``python demo_media.py --out raw``.
Its code is fakedetect.cli.demo_media; ``--help`` lists the flags."""
import sys

from fakedetect.cli.demo_media import main

if __name__ == "__main__":
    sys.exit(main())
