"""The Grad-CAM figures of a run: one image of each class beside its overlay, a grid of six per class, and
the mean map of the true class per class, scored against the fakes' masks where the split has them."""
import matplotlib.pyplot as plt
import numpy as np

from fakedetect.analysis.common import figure_prefix, plot_mean_maps, save
from fakedetect.data.batches import balanced_sample
from fakedetect.explain.grad_cam import grad_cam_explainer, sample_overlays, target_layer_name
from fakedetect.explain.scores import explain_dataset
from fakedetect.models.registry import model_device

GRID_COLUMNS = 6


def plot_single(image, shown, label, explained, score, title, path):
    """One image beside its Grad-CAM overlay."""
    fig, axes = plt.subplots(1, 2, figsize=(7.5, 4.5), layout="constrained")
    fig.get_layout_engine().set(h_pad=0.12)
    axes[0].imshow(image)
    axes[0].set_title(f"{('real', 'fake')[label]} image\n(label from the folder)")
    axes[1].imshow(shown)
    axes[1].set_title(f"Grad-CAM of class '{('real', 'fake')[explained]}'\nP(fake) = {score:.3f}")
    for ax in axes:
        ax.axis("off")
    fig.suptitle(title)
    return save(fig, path)


def plot_grid(images, overlays, labels, explained, fake_scores, title, path):
    """For each class a row of images above a row of their Grad-CAM overlays."""
    fig, axes = plt.subplots(4, GRID_COLUMNS, figsize=(GRID_COLUMNS * 2.0, 4 * 2.25), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for label in (0, 1):
        chosen = np.flatnonzero(labels == label)[:GRID_COLUMNS]
        for column, index in enumerate(chosen):
            axes[2 * label, column].imshow(images[index])
            axes[2 * label, column].set_title(f"{('real', 'fake')[label]}, P(fake) {fake_scores[index]:.2f}", fontsize=9)
            axes[2 * label + 1, column].imshow(overlays[index])
            axes[2 * label + 1, column].set_title(f"CAM of '{('real', 'fake')[explained[index]]}'", fontsize=9)
    fig.suptitle(title)
    fig.tight_layout()
    return save(fig, path)


def grad_cam_analysis(model, normalization, dataset, args, explain="predicted"):
    """Draw every Grad-CAM figure for ``dataset``; returns (figure paths, explain_dataset result)."""
    prefix, where = figure_prefix(args), f"{dataset.root_path.parent.name}/{dataset.root_path.name}"
    layer_name = target_layer_name(model)
    indices = balanced_sample(dataset.labels, 2 * GRID_COLUMNS, args.seed)
    images, overlays, labels, explained, fake_scores = sample_overlays(dataset, model, normalization, indices, explain)
    figures = []
    for label, name in ((0, "Real"), (1, "Fake")):
        chosen = np.flatnonzero(labels == label)
        if len(chosen):
            i = chosen[0]
            figures.append(plot_single(images[i], overlays[i], label, explained[i], fake_scores[i],
                                       f"{args.model} Grad-CAM at {layer_name}: {name.lower()} image of {where}",
                                       f"{args.figures_dir}/{prefix}_{name}_Image_grad_cam.png"))
    figures.append(plot_grid(images, overlays, labels, explained, fake_scores,
                             f"{args.model} Grad-CAM at {layer_name} ({explain} class) on {where}",
                             f"{args.figures_dir}/{prefix}_grad_cam_grid.png"))
    result = explain_dataset(dataset, grad_cam_explainer(model), normalization, model_device(model), args.batch_size,
                             desc="Grad-CAM maps")
    figures.append(plot_mean_maps(result, f"Mean Grad-CAM of the true class at {layer_name}: {args.model} on {where}",
                                  f"{args.figures_dir}/{prefix}_mean_grad_cam.png"))
    return figures, result
