"""Grad-CAM (Selvaraju et al., 2017) of a trained detector, with the ``grad-cam`` package: the layer it
explains, the maps of a batch, and overlays of them on the images (analysis.grad_cam_figures draws the figures,
grad_cam_analysis.py is the command). ``pytorch_grad_cam`` is imported only when a map is computed, so this
module imports without it."""
import numpy as np
import torch

from fakedetect.data.batches import normalized_batches
from fakedetect.data.normalization import Normalizer, denormalize
from fakedetect.models.registry import model_device
from fakedetect.models.simplenet import SimpleNet

EXPLAIN_CHOICES = ("predicted", "true", "fake", "real")


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
