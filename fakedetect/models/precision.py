"""How fast a detector trains on a device: bf16 autocast and channels_last where they measured faster, and
whether a ``--device`` value names a device this machine has."""
import torch

from fakedetect.models.seamnet import parse_seamnet_name
from fakedetect.models.timm_models import PATCH_PREFIX, SEAM_PREFIX, TIMM_PREFIX

BF16_FASTER = {"XceptionBased"}


def device_problem(device):
    """Why ``device`` names no device torch can use on this machine, as the fix (one phrase), or None."""
    try:
        kind = torch.device(device).type
    except (RuntimeError, ValueError):
        return "not a device; use cpu, cuda or cuda:N"
    if kind == "cuda" and not torch.cuda.is_available():
        return "CUDA is not available on this machine; use --device cpu"
    index = torch.device(device).index
    if kind == "cuda" and index is not None and index >= torch.cuda.device_count():
        return (f"this machine has {torch.cuda.device_count()} CUDA device(s); "
                f"use cuda:0 to cuda:{torch.cuda.device_count() - 1}")
    return None


def precision_settings(model_name, device, amp="auto"):
    """(autocast dtype or None, channels_last) for training ``model_name`` on ``device``.

    bf16 autocast and channels_last only on CUDA: ``auto`` turns them on for XceptionBased,
    where they measured faster, and for timm and patch models (deep CNNs like it), and off for
    SimpleNet, where fp32 measured faster, and on GPUs without native bf16 (compute capability
    below 8, before Ampere, where it is emulated and slow); ``bf16`` forces them on, ``off`` off.
    On the CPU autocast is always off (bf16 is slow there), and channels_last is on for the
    SeamNet family only (unless ``off``), where it measured 1.8x faster to train.
    """
    if amp == "off":
        return None, False
    if torch.device(device).type != "cuda":
        return None, parse_seamnet_name(model_name) is not None or model_name.startswith(SEAM_PREFIX)
    if amp == "bf16":
        return torch.bfloat16, True
    faster = model_name in BF16_FASTER or model_name.startswith((TIMM_PREFIX, PATCH_PREFIX, SEAM_PREFIX))
    if faster and torch.cuda.get_device_capability(device)[0] >= 8:  # native bf16 from Ampere on
        return torch.bfloat16, True
    return None, False
