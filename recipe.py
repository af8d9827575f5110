"""Training recipes and what they are made of: the optimizer, the learning-rate schedule,
input normalization and class-balancing weights, shared by train_main.py and the trainer.

``RECIPES["course"]`` is the course's recipe exactly (CIFAR-10 normalization, RandomCrop(256,
padding=4) + flip, Adam lr 1e-3, batch 32, cross-entropy, constant learning rate).
``RECIPES["improved"]`` is the default; see the README for why each value.
"""
import math

import torch

CIFAR10_NORMALIZATION = ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))
SYMMETRIC_NORMALIZATION = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
NORMALIZATIONS = ("auto", "dataset", "symmetric", "model", "cifar10")
OPTIMIZERS = ("SGD", "Adam", "AdamW")
SCHEDULES = ("constant", "cosine")
CLASS_BALANCE = ("none", "sampler", "weights")

RECIPES = {
    "course": {"optimizer": "Adam", "lr": 1e-3, "batch_size": 32, "epochs": 2, "weight_decay": 0.0,
               "schedule": "constant", "warmup_epochs": 0.0, "label_smoothing": 0.0, "class_balance": "none",
               "patience": 0, "clip_grad_norm": 0.0, "normalization": "cifar10", "selection_metric": "val_acc",
               "crop": "pad", "crop_size": 224, "crop_scale": 0.25, "flip": True, "jitter": 0.0, "blur_prob": 0.0,
               "jpeg_prob": 0.0, "erase_prob": 0.0, "mixup": 0.0, "drop_path": 0.0, "ema": 0.0},
    "improved": {"optimizer": "AdamW", "lr": 5e-4, "batch_size": 32, "epochs": 10, "weight_decay": 0.05,
                 "schedule": "cosine", "warmup_epochs": 1.0, "label_smoothing": 0.1, "class_balance": "weights",
                 "patience": 4, "clip_grad_norm": 1.0, "normalization": "auto", "selection_metric": "val_auc",
                 "crop": "pad", "crop_size": 224, "crop_scale": 0.25, "flip": True, "jitter": 0.0, "blur_prob": 0.0,
                 "jpeg_prob": 0.0, "erase_prob": 0.0, "mixup": 0.0, "drop_path": 0.0, "ema": 0.0},
}
DEFAULT_RECIPE = "improved"


def build_optimizer(name, parameters, lr, momentum=0.9, weight_decay=0.0):
    """SGD (with ``momentum``), Adam, or AdamW (with decoupled ``weight_decay``)."""
    if name == "SGD":
        return torch.optim.SGD(parameters, lr=lr, momentum=momentum)
    if name == "Adam":
        return torch.optim.Adam(parameters, lr=lr)
    if name == "AdamW":
        return torch.optim.AdamW(parameters, lr=lr, weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {name!r}; choose one of {', '.join(OPTIMIZERS)}")


def lr_factor(schedule, step, total_steps, warmup_steps):
    """Multiplier of the base learning rate at optimizer step ``step`` (0-based): linear warm-up
    from 1/warmup_steps to 1 over ``warmup_steps`` steps, then constant or a cosine decay that
    reaches 0 at ``total_steps``."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant":
        return 1.0
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def build_scheduler(optimizer, schedule, total_steps, warmup_steps=0):
    """A LambdaLR stepped once per optimizer step, or None for a constant rate without warm-up."""
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {schedule!r}; choose one of {', '.join(SCHEDULES)}")
    if schedule == "constant" and warmup_steps == 0:
        return None
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(schedule, step, total_steps, warmup_steps))


def class_weights(labels):
    """Cross-entropy class weights that make both classes count equally: N / (2 * class size)."""
    counts = torch.bincount(torch.as_tensor(labels, dtype=torch.int64), minlength=2).float()
    return counts.sum() / (2 * counts)


def resolve_normalization(choice, model_name, model, pretrained, train_dataset):
    """(mean, std) of the input normalization ``choice`` names.

    ``dataset``: per-channel statistics of the training split; ``symmetric``: [-1, 1];
    ``model``: the backbone's own (Xception's, or the timm architecture's pretrained_cfg);
    ``cifar10``: the course's constants; ``auto``: ``model`` when pretrained weights are
    loaded, else ``dataset``.
    """
    from faces_dataset import channel_statistics
    from models import model_normalization

    if choice == "auto":
        choice = "model" if pretrained else "dataset"
    if choice == "dataset":
        return channel_statistics(train_dataset)
    if choice == "symmetric":
        return SYMMETRIC_NORMALIZATION
    if choice == "cifar10":
        return CIFAR10_NORMALIZATION
    if choice == "model":
        return model_normalization(model_name, model)
    raise ValueError(f"unknown normalization {choice!r}; choose one of {', '.join(NORMALIZATIONS)}")
