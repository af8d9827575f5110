"""The saliency figures of a run: sampled images beside their gradient saliency maps (errors marked), and the
mean map per class, scored against the fakes' masks where the split has them."""
import matplotlib.pyplot as plt
import numpy as np

from fakedetect.analysis.common import figure_prefix, plot_mean_maps, save
from fakedetect.data.batches import balanced_sample
from fakedetect.explain.saliency import saliency_explainer, sample_maps
from fakedetect.explain.scores import explain_dataset
from fakedetect.models.registry import model_device

PAIRS = 36
COLUMNS = 6


def plot_pairs(images, maps, labels, fake_scores, title, path, map_name="saliency", threshold=0.5):
    """Images beside their maps, COLUMNS pairs per row; each map scaled to its 99th percentile; an
    image's title is red when it is misclassified at ``threshold`` on P(fake)."""
    rows = (len(images) + COLUMNS - 1) // COLUMNS
    fig, axes = plt.subplots(rows, 2 * COLUMNS, figsize=(2 * COLUMNS * 1.45, rows * 1.75 + 0.7), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for index, (image, saliency, label, score) in enumerate(zip(images, maps, labels, fake_scores)):
        image_ax, map_ax = axes[index // COLUMNS, 2 * (index % COLUMNS)], axes[index // COLUMNS, 2 * (index % COLUMNS) + 1]
        image_ax.imshow(image)
        correct = (score >= threshold) == bool(label)
        image_ax.set_title(f"{('real', 'fake')[label]}, P(fake) {score:.3f}", fontsize=8.5,
                           color="black" if correct else "crimson")
        top = np.percentile(saliency, 99) or 1.0
        map_ax.imshow(np.clip(saliency / top, 0, 1), cmap="inferno", vmin=0, vmax=1)
        map_ax.set_title(map_name, fontsize=8.5)
    fig.suptitle(f"{title}\n(true label from the folder; red title = misclassified at threshold {threshold:.3f})")
    fig.tight_layout()
    return save(fig, path)


def saliency_analysis(model, normalization, dataset, args, threshold=0.5):
    """Draw both saliency figures for ``dataset`` (errors marked at ``threshold``, the checkpoint's);
    returns (figure paths, explain_dataset result)."""
    prefix, device = figure_prefix(args), model_device(model)
    indices = balanced_sample(dataset.labels, PAIRS, args.seed)
    images, maps, labels, fake_scores = sample_maps(dataset, model, normalization, indices)
    where = f"{dataset.root_path.parent.name}/{dataset.root_path.name}"
    figures = [plot_pairs(images, maps, labels, fake_scores, f"Gradient saliency of the true class: {args.model} on {where}",
                          f"{args.figures_dir}/{prefix}_saliency_maps_and_images_pairs.png", threshold=threshold)]
    result = explain_dataset(dataset, saliency_explainer(model), normalization, device, args.batch_size,
                             desc="saliency maps")
    figures.append(plot_mean_maps(result, f"Mean gradient saliency (true class): {args.model} on {where}",
                                  f"{args.figures_dir}/{prefix}_mean_saliency_maps.png"))
    return figures, result
