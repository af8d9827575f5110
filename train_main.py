"""Train a real/fake face detector: ``python train_main.py -m SimpleNet -d demo_fakes``.
Its code is fakedetect.cli.train; ``--help`` lists the flags."""
import sys

from fakedetect.cli.train import main

if __name__ == "__main__":
    sys.exit(main())
