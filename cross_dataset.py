"""One run on its own test split and on other datasets: ``python cross_dataset.py -m M -d D --eval-dataset E``.
Its code is fakedetect.cli.cross_dataset; ``--help`` lists the flags."""
import sys

from fakedetect.cli.cross_dataset import main

if __name__ == "__main__":
    sys.exit(main())
