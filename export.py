"""Export a detector to ONNX or TorchScript: ``python export.py CHECKPOINT --format onnx -o FILE``.
Its code is fakedetect.cli.export; ``--help`` lists the flags."""
import sys

from fakedetect.cli.export import main

if __name__ == "__main__":
    sys.exit(main())
