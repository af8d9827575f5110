"""The local web demo of a detector: ``python app.py CHECKPOINT``.
Its code is fakedetect.cli.app; ``--help`` lists the flags."""
import sys

from fakedetect.cli.app import main

if __name__ == "__main__":
    sys.exit(main())
