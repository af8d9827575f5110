"""How training went: loss, accuracy and AUC per epoch of a run, drawn from its metrics JSON (the best epoch
marked); plot_accuracy_and_loss.py is the command."""
import math

import matplotlib.pyplot as plt
from matplotlib.ticker import MaxNLocator

from fakedetect.analysis.common import save
from fakedetect.data.folders import dataset_name
from fakedetect.io.runs import Run

CURVES = (("train", "o-", "tab:blue"), ("val", "s-", "tab:orange"), ("test", "^-", "tab:green"))


def plot_curves(history, kind, title, path):
    """One figure of ``{split}_{kind}`` per epoch (kind "loss", "acc" or "auc": validation and
    test only, undefined epochs left out) with the best epoch marked."""
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    epochs = range(1, len(history["train_loss"]) + 1)
    for split, style, colour in CURVES:
        if f"{split}_{kind}" in history:
            name = {"train": "train", "val": "validation", "test": "test"}[split]
            values = [math.nan if value is None else value for value in history[f"{split}_{kind}"]]
            ax.plot(epochs, values, style, color=colour, lw=2, ms=5, label=name)
    if history.get("best_epoch"):
        metric = {"val_acc": "validation accuracy", "val_auc": "validation AUC"}[history.get("selection_metric", "val_acc")]
        ax.axvline(history["best_epoch"], color="grey", ls="--", lw=1.5,
                   label=f"best on {metric} (epoch {history['best_epoch']})")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set(xlabel="epoch", ylabel={"loss": "cross-entropy loss", "acc": "accuracy", "auc": "ROC AUC"}[kind], title=title)
    if kind in ("acc", "auc"):
        ax.set_ylim(top=1.02)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.15), ncol=2)
    return save(fig, path)


def plot_accuracy_and_loss(history, figures_dir):
    """Both figures of a run's ``history`` (its metrics JSON); returns their paths."""
    prefix = history.get("run_name") or Run(history["model"], dataset_name(history["dataset"]),
                                            history["optimizer"]["name"]).name
    run = f"{history['model']} on {history['dataset']}"
    optimizer = f"{history['optimizer']['name']}, lr {history['optimizer']['params'].get('lr')}"
    return [plot_curves(history, "loss", f"Loss per epoch: {run} ({optimizer})", f"{figures_dir}/{prefix}_losses_plot.png"),
            plot_curves(history, "acc", f"Accuracy per epoch: {run} ({optimizer})",
                        f"{figures_dir}/{prefix}_accuracies_plot.png"),
            *([plot_curves(history, "auc", f"AUC per epoch: {run} ({optimizer})", f"{figures_dir}/{prefix}_auc_plot.png")]
              if "val_auc" in history else [])]
