"""Loss, accuracy and AUC curves of a run: ``python plot_accuracy_and_loss.py -m SimpleNet -d demo_fakes``
(fakedetect.cli.plot_accuracy_and_loss)."""
import sys

from fakedetect.analysis.curves import plot_accuracy_and_loss
from fakedetect.cli.plot_accuracy_and_loss import main

__all__ = ["main", "plot_accuracy_and_loss"]

if __name__ == "__main__":
    sys.exit(main())
