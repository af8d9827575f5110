"""Where in the face the detector looks: gradient saliency maps (Simonyan et al., 2014).

    python saliency_map.py -m SimpleNet -d demo_fakes -o AdamW

Writes ``figures/{dataset}_{model}_{optimizer}_saliency_maps_and_images_pairs.png`` (36 test images, half
real and half fake, drawn with ``--seed``, beside their maps) and
``..._mean_saliency_maps.png`` (mean normalized map of the real and of the fake test images),
and prints how well the maps of fakes hit their ground-truth masks when the split has them.
"""
import sys

import matplotlib.pyplot as plt
import numpy as np
import torch

from analysis_common import (add_run_arguments, balanced_sample, denormalize, exits_on_error, figure_prefix,
                             load_run_model, load_split, model_device, normalized_batches, parse_args, save)
from cli import ArgumentParser
from explanation_scores import explain_dataset, format_scores_table, plot_mean_maps, summarize_scores
from runs import operating_threshold

PAIRS = 36
COLUMNS = 6


def compute_gradient_saliency_maps(samples, labels, model):
    """B x H x W maps: |d true-class logit / d input|, max over the colour channels.

    ``samples`` are normalized B x 3 x H x W model inputs, ``labels`` the true classes; the
    model's parameters and mode are left as they are.
    """
    samples = samples.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        logits = model(samples)
        true_class_logits = logits.gather(1, labels.to(logits.device).view(-1, 1)).sum()
        gradient, = torch.autograd.grad(true_class_logits, samples)
    return gradient.abs().amax(dim=1)


def saliency_explainer(model):
    """explain_dataset's ``explain`` for ``model``: true-class gradient saliency maps as an array."""
    return lambda images, labels: compute_gradient_saliency_maps(images, labels, model).cpu().numpy()


def sample_maps(dataset, model, normalization, indices):
    """(uint8 images, saliency maps, labels, P(fake)) of ``dataset[indices]``."""
    images, maps, labels, fake_scores = [], [], [], []
    for batch, batch_labels in normalized_batches(dataset, normalization, model_device(model), 12, indices):
        maps.append(compute_gradient_saliency_maps(batch, batch_labels, model).cpu().numpy())
        with torch.inference_mode():
            fake_scores.append(torch.softmax(model(batch).float(), 1)[:, 1].cpu().numpy())
        images.append(denormalize(batch, normalization))
        labels.append(batch_labels.cpu().numpy())
    return [np.concatenate(part) for part in (images, maps, labels, fake_scores)]


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


@exits_on_error
def main(argv=None):
    parser = ArgumentParser(description=__doc__)
    args = parse_args(add_run_arguments(parser), argv)
    model, checkpoint = load_run_model(args)
    _, result = saliency_analysis(model, checkpoint["normalization"], load_split(args), args,
                                  operating_threshold(checkpoint))
    if result["scores"]["map"]:
        print("\nsaliency maps of fakes against their manipulation masks:")
        print(format_scores_table(summarize_scores(result["scores"], "saliency")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
