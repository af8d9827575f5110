"""Where in the face the detector looks: gradient saliency maps (Simonyan et al., 2014) of a batch
(analysis.saliency_figures draws the figures, saliency_map.py is the command)."""
import numpy as np
import torch

from fakedetect.data.batches import normalized_batches
from fakedetect.data.normalization import denormalize
from fakedetect.models.registry import model_device


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
