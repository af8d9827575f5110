"""Generate the demo datasets: ``python demo_data.py [--output data]``.
Its code is fakedetect.cli.demo_data; ``--help`` lists the flags."""
import sys

from fakedetect.cli.demo_data import main

if __name__ == "__main__":
    sys.exit(main())
