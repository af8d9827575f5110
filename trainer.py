"""The course's abstract trainer, kept as a name: the training loop of fakedetect.train.trainer."""
from fakedetect.train.trainer import (NonFiniteLossError, Runtime, Trainer, WeightAverage, format_history_table,
                                      seed_everything)

__all__ = ["format_history_table", "NonFiniteLossError", "Runtime", "seed_everything", "Trainer", "WeightAverage"]
