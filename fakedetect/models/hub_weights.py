"""Pretrained weights the way timm gets them: ``timm.create_model(arch, pretrained=True)``.

timm downloads an architecture's weights once, from the Hugging Face hub (``timm/ARCH.TAG``,
into the hub's cache: ``$HF_HOME/hub``, by default ``~/.cache/huggingface/hub``) or, for the
few without a hub copy such as ``legacy_xception``, from the URL in its pretrained config
(into torch hub's cache, ``~/.cache/torch/hub/checkpoints``), and reads the cache after that,
offline too. Where that fails (no network, offline mode: ``HF_HUB_OFFLINE=1``, a broken
download, an architecture timm has no weights for) ``WeightsUnavailableError`` says what failed
and how to go on: a local ``--weights FILE``, or random weights; nothing falls back to random
weights silently. The download itself is tried only where a network exists; the tests use the
cache layout and offline mode.
"""
from pathlib import Path

LOCAL_WEIGHTS = "pass a local file with --weights FILE (.safetensors or a torch state dict)"


class WeightsUnavailableError(RuntimeError):
    """Pretrained weights were asked for but cannot be had (offline, a failed download, none published)."""


def download_errors():
    """The exceptions a failed download or cache read raises (the hub's HTTP errors are OSErrors; httpx's are not)."""
    errors = [OSError, RuntimeError, ValueError]
    try:
        import httpx
        errors.append(httpx.HTTPError)
    except ImportError:
        pass
    return tuple(errors)


def weights_source(arch):
    """(where timm loads ``arch``'s pretrained weights from, its cache folder); WeightsUnavailableError when nowhere."""
    import torch
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(arch)
    if cfg is not None and cfg.hf_hub_id:
        from huggingface_hub import constants
        return f"the Hugging Face hub ({cfg.hf_hub_id})", Path(constants.HF_HUB_CACHE)
    if cfg is not None and cfg.url:
        return cfg.url, Path(torch.hub.get_dir()) / "checkpoints"
    raise WeightsUnavailableError(f"timm publishes no pretrained weights for {arch}")


def create_pretrained(arch, without, **kwargs):
    """``timm.create_model(arch, pretrained=True, **kwargs)``: downloaded once into the cache, read from it
    after. WeightsUnavailableError naming what failed, ``--weights FILE`` and ``without`` (how to train from
    random weights instead) when the weights cannot be had."""
    import timm
    from huggingface_hub import constants

    def unavailable(why):
        return WeightsUnavailableError(f"pretrained weights of timm {arch}: {why}; {LOCAL_WEIGHTS} or {without}")

    try:
        source, cache = weights_source(arch)
    except WeightsUnavailableError as error:
        raise unavailable(str(error).replace(f" for {arch}", "")) from None
    cached_url_file = cache / Path(source).name
    if constants.HF_HUB_OFFLINE and source.startswith("http") and not cached_url_file.is_file():
        raise unavailable(f"not in {cache} and the hub is offline (HF_HUB_OFFLINE=1), so {source} is not downloaded")
    try:
        return timm.create_model(arch, pretrained=True, **kwargs)
    except download_errors() as error:
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        reason = (lines[0].split(". ")[0] if lines else type(error).__name__)[:200]  # the hub adds advice sentences
        offline = ", and the hub is offline (HF_HUB_OFFLINE=1)" if constants.HF_HUB_OFFLINE else ""
        raise unavailable(f"could not be loaded from {source} or its cache {cache} ({reason}){offline}") from None
