"""Photos and videos to a dataset of face crops: ``python build_faces_dataset.py --real R --fake F -o OUT``.
Its code is fakedetect.cli.build_faces_dataset; ``--help`` lists the flags."""
import sys

from fakedetect.cli.build_faces_dataset import main

if __name__ == "__main__":
    sys.exit(main())
