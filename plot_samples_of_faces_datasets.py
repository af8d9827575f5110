"""Real/fake pairs of each dataset: ``python plot_samples_of_faces_datasets.py``.
Its code is fakedetect.cli.plot_samples_of_faces_datasets; ``--help`` lists the flags."""
import sys

from fakedetect.cli.plot_samples_of_faces_datasets import main

if __name__ == "__main__":
    sys.exit(main())
