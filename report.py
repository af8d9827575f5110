"""Every figure and number of a trained run: ``python report.py -m SimpleNet -d demo_fakes``.
Its code is fakedetect.cli.report; ``--help`` lists the flags."""
import sys

from fakedetect.cli.report import main

if __name__ == "__main__":
    sys.exit(main())
