"""Grad-CAM (Selvaraju et al., 2017) of a trained detector, with the ``grad-cam`` package.

    python grad_cam_analysis.py -m SimpleNet -d demo_fakes -o AdamW [--explain predicted|true|fake|real]

Writes ``figures/{dataset}_{model}_{optimizer}_Real_Image_grad_cam.png`` and ``..._Fake_Image_grad_cam.png``
(one test image of each class, drawn with ``--seed``), ``..._grad_cam_grid.png`` (six images
per class) and ``..._mean_grad_cam.png`` (mean map of the true class per class), and prints
how well the maps of fakes hit their ground-truth masks when the split has them.
``pytorch_grad_cam`` is imported only when a map is computed, so this module imports without it.
"""
import importlib.util
import sys

import matplotlib.pyplot as plt
import numpy as np
import torch

from analysis_common import (AnalysisError, add_run_arguments, balanced_sample, denormalize, exits_on_error,
                             figure_prefix, load_run_model, load_split, model_device, normalized_batches, parse_args,
                             save)
from cli import ArgumentParser
from explanation_scores import explain_dataset, format_scores_table, plot_mean_maps, summarize_scores
from faces_dataset import Normalizer
from models import SimpleNet

EXPLAIN_CHOICES = ("predicted", "true", "fake", "real")
GRID_COLUMNS = 6


def target_layer_name(model):
    """The layer Grad-CAM explains: ``conv3`` for SimpleNet, ``act4`` for XceptionBased, and for
    any other model (timm architectures) ``last_spatial_module``: the module feeding global pooling.

    Xception's last stages (``block12``, ``conv3``/``bn3``, ``conv4``/``bn4``/``act4``) all
    work at the same 8x8 resolution for a 256x256 input (``block12`` holds the last stride),
    so none of them gives a sharper map. ``act4`` is the most faithful of them: it is exactly
    what the global average pool feeds to the classifier head, so the Grad-CAM weights are
    the head's own (linearized) weights on the pooled features and the map decomposes the
    logit over space, instead of a gradient propagated back through two more separable
    convolutions as at ``block12``. (``block11``, at 16x16, is sharper but outside the last
    stage and far less class-specific.)
    """
    if isinstance(model, SimpleNet):
        return "conv3"
    if hasattr(model, "act4"):
        return "act4"
    return last_spatial_module(model)


def last_spatial_module(model, size=256):
    """Name of the last module to finish, in a forward pass of one ``size`` x ``size`` image, whose
    output is a feature map (4-D, larger than 1x1): for a CNN with a global-pooling head (every
    timm CNN) that is what the pooling reads (e.g. ``layer4`` of a ResNet, ``bn2`` of an
    EfficientNet), the layer whose Grad-CAM decomposes the logit over space, as ``act4`` does
    for Xception. Raises ValueError when the model has no such module."""
    finished = []
    hooks = [module.register_forward_hook(lambda module, inputs, output, name=name: finished.append((name, output)))
             for name, module in model.named_modules() if name]
    training = model.training
    try:
        model.eval()
        parameter = next(model.parameters())
        with torch.no_grad():
            model(torch.zeros(1, 3, size, size, device=parameter.device, dtype=parameter.dtype))
    finally:
        model.train(training)
        for hook in hooks:
            hook.remove()
    spatial = [name for name, output in finished
               if isinstance(output, torch.Tensor) and output.dim() == 4 and output.shape[-2:].numel() > 1]
    if not spatial:
        raise ValueError(f"no module of {type(model).__name__} outputs a feature map; pass layer=")
    return spatial[-1]


def classes_to_explain(explain, labels, logits):
    """The class per image whose evidence is shown: the ``predicted``, the ``true``, or always ``fake``/``real``."""
    if explain == "predicted":
        return logits.argmax(1)
    if explain == "true":
        return labels
    if explain in ("fake", "real"):
        return torch.full_like(labels, 1 if explain == "fake" else 0)
    raise ValueError(f"explain must be one of {EXPLAIN_CHOICES}, not {explain!r}")


def grad_cam_maps(images, model, classes, layer=None):
    """B x H x W Grad-CAM maps in [0, 1] of ``classes`` for normalized ``images`` at ``layer``."""
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    with GradCAM(model=model, target_layers=[layer or model.get_submodule(target_layer_name(model))]) as cam:
        return cam(input_tensor=images, targets=[ClassifierOutputTarget(int(c)) for c in classes])


def grad_cam_explainer(model):
    """explain_dataset's ``explain`` for ``model``: Grad-CAM maps of the true class."""
    return lambda images, labels: grad_cam_maps(images, model, labels)


def explain_batch(images, labels, model, explain="predicted", layer=None):
    """(Grad-CAM maps, explained classes, P(fake)) of one normalized batch."""
    with torch.inference_mode():
        logits = model(images).float()
    classes = classes_to_explain(explain, labels, logits)
    return grad_cam_maps(images, model, classes, layer), classes.cpu().numpy(), torch.softmax(logits, 1)[:, 1].cpu().numpy()


def explain_pixels(model, pixels, normalization, explain="fake", labels=None):
    """(P(fake) per image, Grad-CAM overlays) of uint8 ``pixels`` (N x H x W x 3) under ``model``
    with the input ``normalization``; ``labels`` only for ``explain="true"``."""
    device = model_device(model)
    images = Normalizer(*normalization, device)(torch.as_tensor(np.asarray(pixels)).permute(0, 3, 1, 2).to(device))
    labels = torch.as_tensor(labels if labels is not None else [0] * len(images), device=device)
    cams, _, fake_scores = explain_batch(images, labels, model, explain)
    return fake_scores, np.stack([overlay(image, cam) for image, cam in zip(np.asarray(pixels), cams)])


def overlay(pixels, cam):
    """An H x W x 3 uint8 image with its Grad-CAM drawn over it (jet colours, RGB order)."""
    from pytorch_grad_cam.utils.image import show_cam_on_image

    return show_cam_on_image(pixels.astype(np.float32) / 255, cam, use_rgb=True)


def get_grad_cam_visualization(test_dataset, model, normalization, index=None, explain="predicted", layer=None, seed=0):
    """The course's single-image call: (overlay, label) of one image of ``test_dataset``, its
    original colours under the Grad-CAM of the class ``explain`` names. ``normalization`` is the
    checkpoint's ``(mean, std)``; ``index`` None draws an image with ``seed``."""
    if index is None:
        index = int(np.random.default_rng(seed).integers(len(test_dataset)))
    images, labels = next(normalized_batches(test_dataset, normalization, model_device(model), 1, [index]))
    cams, _, _ = explain_batch(images, labels, model, explain, layer)
    return overlay(denormalize(images, normalization)[0], cams[0]), int(labels[0])


def sample_overlays(dataset, model, normalization, indices, explain):
    """(uint8 images, overlays, labels, explained classes, P(fake)) of ``dataset[indices]``."""
    parts = [[] for _ in range(5)]
    for images, labels in normalized_batches(dataset, normalization, model_device(model), 12, indices):
        cams, classes, fake_scores = explain_batch(images, labels, model, explain)
        pixels = denormalize(images, normalization)
        for part, values in zip(parts, (pixels, [overlay(p, c) for p, c in zip(pixels, cams)],
                                        labels.cpu().numpy(), classes, fake_scores)):
            part.extend(values)
    return [np.asarray(part) for part in parts]


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


@exits_on_error
def main(argv=None):
    parser = ArgumentParser(description=__doc__)
    add_run_arguments(parser).add_argument("--explain", default="predicted", choices=EXPLAIN_CHOICES,
                                           help="class whose evidence the figures show (default: predicted)")
    args = parse_args(parser, argv)
    if importlib.util.find_spec("pytorch_grad_cam") is None:
        raise AnalysisError("grad_cam_analysis.py needs the grad-cam package: pip install 'grad-cam>=1.5,<2'")
    model, checkpoint = load_run_model(args)
    _, result = grad_cam_analysis(model, checkpoint["normalization"], load_split(args), args, args.explain)
    if result["scores"]["map"]:
        print("\nGrad-CAM maps of fakes (true class) against their manipulation masks:")
        print(format_scores_table(summarize_scores(result["scores"], "Grad-CAM")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
