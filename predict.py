"""Score images and videos with a trained detector: ``python predict.py CHECKPOINT INPUTS...``.
Its code is fakedetect.cli.predict; ``--help`` lists the flags."""
import sys

from fakedetect.cli.predict import main

if __name__ == "__main__":
    sys.exit(main())
