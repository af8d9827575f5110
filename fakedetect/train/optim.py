"""What the optimization knobs of a recipe build: the optimizer, the learning-rate schedule (warm-up, then
constant or cosine) and the cross-entropy class weights of ``--class-balance weights``."""
import math

import torch

from fakedetect.config.recipe import OPTIMIZERS, SCHEDULES


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


def class_weights(labels, counts=None):
    """Cross-entropy class weights that make both classes count equally: N / (2 * class size), from the
    ``labels`` or, when given, the (real, fake) ``counts`` (those of an epoch with pseudo-fakes)."""
    if counts is None:
        counts = torch.bincount(torch.as_tensor(labels, dtype=torch.int64), minlength=2)
    counts = torch.as_tensor(counts, dtype=torch.float32)
    return counts.sum() / (2 * counts)
