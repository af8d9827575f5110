"""Real faces, their self-blended pseudo-fakes and masks: ``python plot_self_blend.py -d demo_fakes``.
Its code is fakedetect.cli.plot_self_blend; ``--help`` lists the flags."""
import sys

from fakedetect.cli.plot_self_blend import main

if __name__ == "__main__":
    sys.exit(main())
