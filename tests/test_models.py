import argparse
import subprocess
import sys

import pytest
import torch

import models
import xception
from fileio import CheckpointError
from models import SimpleNet, build_model, get_xception_based_model, load_trained_model


def count(module, trainable_only=False):
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def test_simplenet_matches_the_course():
    model = SimpleNet()
    assert count(model) == 16_901_762
    assert [name for name, _ in model.named_children()] == ["conv1", "pool", "conv2", "conv3", "fc1", "fc2", "fc3"]
    assert model.conv1.kernel_size == (7, 7) and model.conv1.padding == (0, 0)
    assert model(torch.zeros(2, 3, 256, 256)).shape == (2, 2)


def test_xception_backbone_and_xception_based_counts():
    assert count(xception.build_xception_backbone(pretrained=False)) == 22_855_952
    model = get_xception_based_model(pretrained=False)
    assert count(model, trainable_only=True) == count(model) == 23_128_786
    assert [layer.out_features for layer in model.fc if isinstance(layer, torch.nn.Linear)] == [1000, 256, 64, 2]


def test_simplenet_does_not_import_timm():
    code = "import sys, models; models.build_model('SimpleNet'); print('timm' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            cwd=models.__file__.rsplit("/", 1)[0])
    assert result.stdout.strip() == "False"


def test_unknown_model_name():
    with pytest.raises(ValueError, match="unknown model 'ResNet'"):
        build_model("ResNet")


@pytest.fixture(scope="module")
def random_xception_state():
    torch.manual_seed(0)
    return xception.build_xception_backbone(pretrained=False).state_dict()


def assert_same_state(model, state):
    loaded = model.state_dict()
    assert all(torch.equal(loaded[key], state[key]) for key in state)


def test_weights_in_timm_layout(tmp_path, random_xception_state):
    torch.save(random_xception_state, tmp_path / "timm.pth")
    assert_same_state(xception.build_xception_backbone(weights=tmp_path / "timm.pth"), random_xception_state)


def test_weights_in_cadene_layout(tmp_path, random_xception_state):
    cadene = {}
    for key, value in random_xception_state.items():
        if "pointwise" in key:
            value = value[:, :, 0, 0]  # the original release stores pointwise kernels as 2-D
        cadene[key.replace("fc.", "last_linear.")] = value
    torch.save(cadene, tmp_path / "cadene.pth")
    model = get_xception_based_model(weights=tmp_path / "cadene.pth")
    state = {k: v for k, v in random_xception_state.items() if not k.startswith("fc.")}
    assert_same_state(model, state)


def test_weights_of_another_model_are_refused(tmp_path):
    torch.save(SimpleNet().state_dict(), tmp_path / "simplenet.pth")
    with pytest.raises(CheckpointError, match=r"simplenet.pth: not Xception .*\((Missing|Unexpected) key.*--weights"):
        xception.build_xception_backbone(weights=tmp_path / "simplenet.pth")
    torch.save({"epoch": 3, "pointwise.weight": "not a tensor"}, tmp_path / "notes.pth")
    with pytest.raises(CheckpointError, match=r"notes.pth: not a state dict \(names to tensors\); pass .* --weights"):
        xception.build_xception_backbone(weights=tmp_path / "notes.pth")


def test_pretrained_never_downloads_and_reads_the_hub_cache(monkeypatch, tmp_path):
    import timm
    real_create = timm.create_model

    def no_download(name, pretrained=False, **kwargs):
        assert not pretrained, "timm was asked to download weights"
        return real_create(name, pretrained=False, **kwargs)
    monkeypatch.setattr(timm, "create_model", no_download)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    cached = tmp_path / "checkpoints" / xception.IMAGENET_WEIGHTS_NAME
    with pytest.raises(RuntimeError, match=f"{cached}.*--weights FILE.*--no-pretrained"):
        get_xception_based_model(pretrained=True)
    reference = xception.build_xception_backbone(pretrained=False)
    cached.parent.mkdir()
    torch.save(reference.state_dict(), cached)
    loaded = xception.build_xception_backbone(pretrained=True)
    assert torch.equal(loaded.fc.weight, reference.fc.weight)


def test_a_resume_state_is_refused_naming_the_best_checkpoint(tiny_run):
    with pytest.raises(CheckpointError, match=r"_last.pt: the resume state of a run .* best checkpoint \(tiny_fakes_SimpleNet_Adam.pt\)"):
        load_trained_model(tiny_run["last"])


def test_load_trained_model_round_trip_and_errors(tmp_path):
    model = SimpleNet()
    torch.save({"model": model.state_dict(), "model_name": "SimpleNet"}, tmp_path / "ok.pt")
    loaded, checkpoint = load_trained_model(tmp_path / "ok.pt")
    assert not loaded.training and checkpoint["model_name"] == "SimpleNet"
    assert torch.equal(loaded.fc3.weight, model.fc3.weight)
    torch.save({"model": model.state_dict(), "model_name": "XceptionBased"}, tmp_path / "wrong.pt")
    with pytest.raises(CheckpointError, match="wrong.pt: weights do not fit XceptionBased"):
        load_trained_model(tmp_path / "wrong.pt")
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(CheckpointError, match=r"junk.pt: not a loadable checkpoint \(not a file written by torch.save\)"):
        load_trained_model(tmp_path / "junk.pt")


def test_precision_settings_never_use_bf16_on_the_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (9, 0))
    assert models.precision_settings("XceptionBased", "cpu", "bf16") == (None, False)
    assert models.precision_settings("XceptionBased", "cuda", "auto") == (torch.bfloat16, True)
    assert models.precision_settings("SimpleNet", "cuda", "auto") == (None, False)
    assert models.precision_settings("SimpleNet", "cuda:0", "bf16") == (torch.bfloat16, True)
    assert models.precision_settings("XceptionBased", "cuda", "off") == (None, False)
    assert models.precision_settings("patch:resnet10t", "cuda") == (torch.bfloat16, True)
    assert models.precision_settings("patch:resnet10t", "cpu") == (None, False)


def test_auto_precision_keeps_fp32_on_gpus_without_native_bf16(monkeypatch):
    capabilities = {"cuda:0": (7, 5), "cuda:1": (8, 0)}  # a T4 and an A100 in one machine
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capabilities[str(device)])
    assert models.precision_settings("timm:resnet18", "cuda:0", "auto") == (None, False)
    assert models.precision_settings("timm:resnet18", "cuda:1", "auto") == (torch.bfloat16, True)
    assert models.precision_settings("timm:resnet18", "cuda:0", "bf16") == (torch.bfloat16, True)


def test_a_cuda_device_this_machine_lacks_exits_2_with_the_valid_ones(monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    parser = argparse.ArgumentParser(prog="train_main.py")
    assert models.resolve_device("cuda:1", parser) == "cuda:1"
    with pytest.raises(SystemExit) as exit_info:
        models.resolve_device("cuda:2", parser)
    assert exit_info.value.code == 2
    assert "--device cuda:2: this machine has 2 CUDA device(s); use cuda:0 to cuda:1" in capsys.readouterr().err
