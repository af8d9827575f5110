"""A live view of a run in TensorBoard (``train_main.py --tensorboard [DIR]``); the JSON stays the record.

``TensorBoardLogger`` is the trainer's optional ``logger``: ``step`` after every optimizer step
(``step/train_loss``, ``step/lr``), ``epoch`` after every epoch (each metric of the epoch's
record under its split: ``train/loss``, ``val/auc``, ``test/balanced_acc``, ``epoch/seconds``
...) and, at every new best epoch, two images: ``best/roc`` (the validation and test ROC curves
of that epoch) and ``best/grad_cam`` (a few validation images under the Grad-CAM of their true
class; only where the grad-cam package is installed and the logger was given ``explain_pixels``).
``torch.utils.tensorboard`` is imported only when a logger is made, so training without it needs no
tensorboard package.

    tensorboard --logdir out/tb      # then open http://localhost:6006
"""
import importlib.util

import numpy as np

from fakedetect.data.batches import balanced_sample
from fakedetect.data.images import load_image

SPLITS = ("train", "val", "test")
EVENT_FILE_PREFIX = "events.out.tfevents."  # the files SummaryWriter writes
GRAD_CAM_IMAGES = 4  # per best epoch: two of each class where the split has them


class TensorBoardLogger:
    """Writes a run's steps and epochs as TensorBoard events under ``log_dir`` (a context manager)."""

    def __init__(self, log_dir, hide_earlier=False, explain_pixels=None):
        from torch.utils.tensorboard import SummaryWriter

        self.explain_pixels = explain_pixels  # explain.grad_cam.explain_pixels: draws best/grad_cam; None: not drawn

        # purge_step 0 starts a new session at step 0: TensorBoard drops every event read before it (nothing deleted)
        self.writer = SummaryWriter(str(log_dir), purge_step=0 if hide_earlier else None)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.writer.close()

    def step(self, step, loss, lr):
        """The training loss (a tensor or number) and learning rate of optimizer step ``step`` (0-based)."""
        self.writer.add_scalar("step/train_loss", float(loss), step)
        self.writer.add_scalar("step/lr", lr, step)

    def epoch(self, trainer, record, improved):
        """Epoch ``trainer.epoch``'s ``record`` (metrics by split); at a new best epoch its ROC curves and a Grad-CAM sample."""
        for key, value in record.items():
            if value is not None:  # an AUC is undefined on a one-class split
                split, _, metric = key.partition("_")
                self.writer.add_scalar(f"{split}/{metric}" if split in SPLITS else f"epoch/{key}", value, trainer.epoch)
        if improved:
            self.writer.add_figure("best/roc", roc_figure(trainer.evaluations, trainer.epoch), trainer.epoch)
            if self.explain_pixels is not None and importlib.util.find_spec("pytorch_grad_cam") is not None:
                self.writer.add_image("best/grad_cam", grad_cam_sample(trainer, self.explain_pixels), trainer.epoch,
                                      dataformats="HWC")
        self.writer.flush()


def roc_figure(evaluations, epoch):
    """A matplotlib figure of the ROC curve of each split in ``evaluations`` (name -> Trainer.evaluate result)."""
    import matplotlib.pyplot as plt
    from sklearn.metrics import roc_curve

    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    for name, result in evaluations.items():
        if len(set(result["labels"].tolist())) == 2:
            false_positives, true_positives, _ = roc_curve(result["labels"], result["scores"])
            ax.plot(false_positives, true_positives, label=f"{name} (AUC {result['auc']:.3f})")
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
    ax.set(xlabel="false positive rate (real called fake)", ylabel="true positive rate (fakes caught)",
           title=f"ROC, best epoch {epoch}")
    ax.legend(loc="lower right")
    return fig


def grad_cam_sample(trainer, explain_pixels):
    """One H x W x 3 uint8 strip: a few validation images above their Grad-CAM overlays (true class), drawn by
    ``explain_pixels`` (explain.grad_cam's, which the command passes: the training layer imports no explainer)."""
    dataset = trainer.validation_dataset
    indices = balanced_sample(dataset.labels, GRAD_CAM_IMAGES, seed=0)
    pixels = np.stack([np.asarray(load_image(dataset.files[index])) for index in indices])
    labels = [int(dataset.labels[index]) for index in indices]
    model = trainer.average.module if trainer.average is not None else trainer.model
    training = model.training
    try:
        _, overlays = explain_pixels(model, pixels, trainer.normalization, explain="true", labels=labels)
    finally:
        model.train(training)
    return np.concatenate([np.concatenate(list(pixels), axis=1), np.concatenate(list(overlays), axis=1)], axis=0)
