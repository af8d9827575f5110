"""--pretrained: timm's weights through the Hugging Face hub's cache (never the network here), the offline
and failed-download messages, and .safetensors --weights files."""
import json
import os
import subprocess
import sys
import urllib.error
from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import save_file

from fakedetect.cli import train as train_main
from fakedetect.io.files import CheckpointError
from fakedetect.models import xception
from fakedetect.models.hub_weights import WeightsUnavailableError
from fakedetect.models.registry import build_model, model_normalization

ROOT = Path(__file__).resolve().parents[1]
REVISION = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def offline_hub(monkeypatch, tmp_path):
    """An empty Hugging Face hub cache in offline mode (what HF_HOME=... HF_HUB_OFFLINE=1 give a fresh process)."""
    from huggingface_hub import constants
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    return tmp_path / "hub"


def put_in_hub_cache(cache, repo_id, state):
    """``state`` as the hub's cache holds a download of ``repo_id``: models--org--name/snapshots/REV/ + refs/main."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    (repo / "snapshots" / REVISION).mkdir(parents=True)
    save_file({key: value.contiguous() for key, value in state.items()}, repo / "snapshots" / REVISION / "model.safetensors")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(REVISION)


def random_resnet10t():
    torch.manual_seed(1)
    return timm.create_model("resnet10t", pretrained=False).state_dict()


def test_pretrained_timm_and_patch_models_load_the_hubs_cached_weights(offline_hub):
    state = random_resnet10t()
    put_in_hub_cache(offline_hub, "timm/resnet10t.c3_in1k", state)
    model = build_model("timm:resnet10t", pretrained=True)
    assert torch.equal(model.conv1[0].weight, state["conv1.0.weight"])
    assert model.fc.out_features == 2  # the 1000-class head replaced
    assert model_normalization("timm:resnet10t", model) == ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    patch = build_model("patch:resnet10t", pretrained=True)
    assert torch.equal(patch.features.conv1[0].weight, state["conv1.0.weight"])
    assert not torch.equal(build_model("timm:resnet10t").conv1[0].weight, state["conv1.0.weight"])  # default: random


def test_train_main_pretrained_follows_the_pretrained_normalization(offline_hub, tiny_fakes, tmp_path):
    put_in_hub_cache(offline_hub, "timm/resnet10t.c3_in1k", random_resnet10t())
    out = tmp_path / "out"
    assert train_main.main(["-m", "timm:resnet10t", "--pretrained", "-d", str(tiny_fakes), "-e", "1", "-b", "12",
                            "--device", "cpu", "--run-name", "hub", "--out-dir", str(out),
                            "--checkpoint-dir", str(tmp_path / "ck"), "--cache-dir", str(tmp_path / "cache")]) == 0
    config = json.loads((out / "hub.json").read_text())["config"]
    assert config["pretrained"] is True
    assert config["normalization_mean_std"] == [[0.485, 0.456, 0.406], [0.229, 0.224, 0.225]]


def test_offline_without_the_weights_is_one_line_naming_the_ways_on(tiny_fakes, tmp_path):
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "train_main.py", "-m", "timm:resnet10t", "--pretrained",
                             "-d", str(tiny_fakes), "--device", "cpu", "--out-dir", str(tmp_path / "out"),
                             "--checkpoint-dir", str(tmp_path / "ck"), "--cache-dir", str(tmp_path / "cache")],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 1, result.stderr
    error = result.stderr.strip()
    assert len(error.splitlines()) == 1 and error.startswith("error: pretrained weights of timm resnet10t: ")
    assert "timm/resnet10t.c3_in1k" in error and str(tmp_path / "hf" / "hub") in error and "HF_HUB_OFFLINE=1" in error
    assert "--weights FILE (.safetensors or a torch state dict) or drop --pretrained" in error
    assert not (tmp_path / "ck" / "tiny_fakes_timm-resnet10t_AdamW.pt").exists()


def test_xception_reads_torch_hubs_cache_and_offline_names_the_url(offline_hub, monkeypatch, tmp_path):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "torch"))
    with pytest.raises(WeightsUnavailableError, match=r"legacy_xception: not in .*torch/checkpoints and the hub is "
                                                      r"offline .*xception-43020ad28.pth.*--no-pretrained"):
        xception.build_xception_backbone(pretrained=True)
    reference = xception.build_xception_backbone(pretrained=False)
    cached = tmp_path / "torch" / "checkpoints" / "xception-43020ad28.pth"
    cached.parent.mkdir(parents=True)
    torch.save(reference.state_dict(), cached)
    assert torch.equal(xception.build_xception_backbone(pretrained=True).fc.weight, reference.fc.weight)


def test_a_failed_download_is_one_line_never_random_weights(monkeypatch, tmp_path):
    def no_network(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")
    monkeypatch.setattr(timm, "create_model", no_network)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    with pytest.raises(WeightsUnavailableError, match=r"could not be loaded from https://.*xception-43020ad28.pth "
                                                      r"or its cache .* \(<urlopen error .*name resolution>\); "
                                                      r"pass a local file with --weights FILE"):
        build_model("XceptionBased")


def test_an_architecture_without_published_weights_is_refused():
    with pytest.raises(WeightsUnavailableError, match="cspresnet50d: timm publishes no pretrained weights; "
                                                      "pass a local file with --weights FILE"):
        build_model("timm:cspresnet50d", pretrained=True)


def test_safetensors_weights_files_load_and_a_bad_one_is_one_line(tmp_path):
    state = random_resnet10t()
    save_file(state, tmp_path / "resnet10t.safetensors")
    model = build_model("timm:resnet10t", weights=tmp_path / "resnet10t.safetensors")
    assert torch.equal(model.layer1[0].conv1.weight, state["layer1.0.conv1.weight"])
    reference = xception.build_xception_backbone(pretrained=False).state_dict()
    save_file(reference, tmp_path / "xception.safetensors")
    loaded = xception.build_xception_backbone(weights=tmp_path / "xception.safetensors")
    assert torch.equal(loaded.conv1.weight, reference["conv1.weight"])
    (tmp_path / "broken.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    with pytest.raises(CheckpointError, match=r"broken.safetensors: not a loadable .safetensors file \(.*\); pass"):
        build_model("timm:resnet10t", weights=tmp_path / "broken.safetensors")


@pytest.mark.parametrize("flags, message", [
    (["-m", "timm:resnet10t", "--pretrained", "--no-pretrained"], "--pretrained and --no-pretrained contradict"),
    (["-m", "SimpleNet", "--pretrained"], "--pretrained: SimpleNet has no pretrained weights"),
])
def test_contradictory_pretrained_flags_exit_2(tiny_fakes, tmp_path, capsys, flags, message):
    with pytest.raises(SystemExit) as exit_info:
        train_main.parse_args(["-d", str(tiny_fakes), "--out-dir", str(tmp_path / "out")] + flags)
    assert exit_info.value.code == 2 and message in capsys.readouterr().err
