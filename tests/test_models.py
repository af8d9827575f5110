import argparse
import subprocess
import sys

import numpy as np
import pytest
import torch

from fakedetect.cli import common as cli
from fakedetect.cli import train as train_main
from fakedetect.cli.common import model_name
from fakedetect.explain import grad_cam
from fakedetect.io.files import CheckpointError
from fakedetect.models import precision, registry, xception
from fakedetect.models.registry import build_model, load_trained_model, model_name_error
from fakedetect.models.simplenet import SimpleNet
from fakedetect.models.xception import get_xception_based_model


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
    code = "import sys; from fakedetect.models import build_model; build_model('SimpleNet'); print('timm' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
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


def test_a_resume_state_is_refused_naming_the_best_checkpoint(tiny_run):
    with pytest.raises(CheckpointError, match=r"_last.pt: the resume state of a run .* best checkpoint \(tiny_fakes_SimpleNet_Adam.pt\)"):
        load_trained_model(tiny_run["last"])


def test_load_trained_model_round_trip_and_errors(tmp_path):
    model = SimpleNet()
    torch.save({"model": model.state_dict(), "model_name": "SimpleNet", "normalization": [[0.5] * 3, [0.5] * 3]},
               tmp_path / "ok.pt")
    loaded, checkpoint = load_trained_model(tmp_path / "ok.pt")
    assert not loaded.training and checkpoint["model_name"] == "SimpleNet"
    assert torch.equal(loaded.fc3.weight, model.fc3.weight)
    torch.save({"model": model.state_dict(), "model_name": "XceptionBased", "normalization": [[0.5] * 3, [0.5] * 3]},
               tmp_path / "wrong.pt")
    with pytest.raises(CheckpointError, match="wrong.pt: weights do not fit XceptionBased"):
        load_trained_model(tmp_path / "wrong.pt")
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(CheckpointError, match=r"junk.pt: not a loadable checkpoint \(not a file written by torch.save\)"):
        load_trained_model(tmp_path / "junk.pt")


def test_precision_settings_never_use_bf16_on_the_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (9, 0))
    assert precision.precision_settings("XceptionBased", "cpu", "bf16") == (None, False)
    assert precision.precision_settings("XceptionBased", "cuda", "auto") == (torch.bfloat16, True)
    assert precision.precision_settings("SimpleNet", "cuda", "auto") == (None, False)
    assert precision.precision_settings("SimpleNet", "cuda:0", "bf16") == (torch.bfloat16, True)
    assert precision.precision_settings("XceptionBased", "cuda", "off") == (None, False)
    assert precision.precision_settings("patch:resnet10t", "cuda") == (torch.bfloat16, True)
    assert precision.precision_settings("patch:resnet10t", "cpu") == (None, False)


def test_auto_precision_keeps_fp32_on_gpus_without_native_bf16(monkeypatch):
    capabilities = {"cuda:0": (7, 5), "cuda:1": (8, 0)}  # a T4 and an A100 in one machine
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capabilities[str(device)])
    assert precision.precision_settings("timm:resnet18", "cuda:0", "auto") == (None, False)
    assert precision.precision_settings("timm:resnet18", "cuda:1", "auto") == (torch.bfloat16, True)
    assert precision.precision_settings("timm:resnet18", "cuda:0", "bf16") == (torch.bfloat16, True)


def test_a_cuda_device_this_machine_lacks_exits_2_with_the_valid_ones(monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    parser = argparse.ArgumentParser(prog="train_main.py")
    assert cli.resolve_device("cuda:1", parser) == "cuda:1"
    with pytest.raises(SystemExit) as exit_info:
        cli.resolve_device("cuda:2", parser)
    assert exit_info.value.code == 2
    assert "--device cuda:2: this machine has 2 CUDA device(s); use cuda:0 to cuda:1" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["timm:resnet10t", "patch:resnet10t"])
def test_drop_path_makes_training_passes_stochastic_and_evaluation_exact(name):
    torch.manual_seed(1)  # fixed: the patch model has few blocks before stride 8, and at some seeds two passes drop alike
    images = torch.randn(2, 3, 64, 64)
    model = build_model(name, drop_path_rate=0.5)
    drop_rates = [module.drop_prob for module in model.modules() if type(module).__name__ == "DropPath"]
    assert drop_rates and max(drop_rates) > 0
    for module in model.modules():  # timm starts residual branches at zero; dropping them must show
        if isinstance(module, torch.nn.BatchNorm2d):
            torch.nn.init.ones_(module.weight)
    model.train()
    assert not torch.allclose(model(images), model(images))
    model.eval()
    assert torch.equal(model(images), model(images))
    plain = build_model(name).train()
    assert torch.equal(plain(images), plain(images))


def test_timm_model_trains_saves_reloads_and_explains(tiny_fakes, tmp_path):
    pytest.importorskip("pytorch_grad_cam")
    code = train_main.main(["-m", "timm:resnet10t", "-d", str(tiny_fakes), "-b", "8", "-e", "1", "--device", "cpu",
                            "--mixup", "0.2", "--erase-prob", "0.5", "--drop-path", "0.1", "--crop", "resized",
                            "--out-dir", str(tmp_path / "out"), "--checkpoint-dir", str(tmp_path / "ck"),
                            "--cache-dir", str(tmp_path / "cache")])
    assert code == 0
    model, checkpoint = load_trained_model(tmp_path / "ck" / "tiny_fakes_timm-resnet10t_AdamW.pt")
    assert checkpoint["model_name"] == "timm:resnet10t"
    config = checkpoint["config"]
    assert (config["mixup"], config["erase_prob"], config["drop_path"], config["crop"]) == (0.2, 0.5, 0.1, "resized")
    assert grad_cam.target_layer_name(model) == "layer4"
    images = torch.randn(2, 3, 256, 256)
    maps = grad_cam.grad_cam_maps(images, model, [1, 0])
    assert maps.shape == (2, 256, 256) and np.isfinite(maps).all()


def test_timm_weights_load_from_a_local_file_and_bad_files_are_refused(tmp_path):
    import timm
    source = timm.create_model("resnet10t", pretrained=False)  # 1000-class head, as a download would have
    torch.save(source.state_dict(), tmp_path / "resnet10t.pth")
    model = build_model("timm:resnet10t", weights=tmp_path / "resnet10t.pth")
    assert torch.equal(model.state_dict()["conv1.0.weight"], source.state_dict()["conv1.0.weight"])
    assert model.fc.out_features == 2
    torch.save(SimpleNet().state_dict(), tmp_path / "simplenet.pth")
    with pytest.raises(CheckpointError, match="not a state dict of timm resnet10t"):
        build_model("timm:resnet10t", weights=tmp_path / "simplenet.pth")
    torch.save(torch.ones(3), tmp_path / "tensor.pth")
    torch.save({"epoch": 3, "fc.weight": 1}, tmp_path / "notes.pth")
    (tmp_path / "notes.txt").write_text("not weights")
    for bad, says in [("missing.pth", "weights file not found"), ("notes.txt", r"not a loadable weights file \(not a file written by torch.save\)"),
                      ("tensor.pth", r"not a state dict \(names to tensors\)"),
                      ("notes.pth", r"not a state dict \(names to tensors\)")]:
        with pytest.raises(CheckpointError, match=rf"{bad}: {says}.*timm.create_model\('resnet10t'\)"):
            build_model("timm:resnet10t", weights=tmp_path / bad)


def test_timm_weights_load_when_the_architecture_has_two_heads(tmp_path):
    import timm
    arch = "deit_tiny_distilled_patch16_224"  # classifier ("head", "head_dist")
    source = timm.create_model(arch, pretrained=False)
    torch.save(source.state_dict(), tmp_path / "deit.pth")
    model = build_model(f"timm:{arch}", weights=tmp_path / "deit.pth")
    assert torch.equal(model.state_dict()["cls_token"], source.state_dict()["cls_token"])
    assert model.head.out_features == model.head_dist.out_features == 2


def patch_logit_map(model, images):
    with torch.no_grad():
        return model.patch_logits(model.features(images)[-1])


def test_patch_detector_takes_any_size_and_its_patch_logits_are_local():
    torch.manual_seed(0)
    model = build_model("patch:resnet10t").eval()
    images = torch.randn(2, 3, 256, 256)
    with torch.no_grad():
        assert model(images).shape == (2, 2)
        assert model(torch.randn(3, 3, 192, 192)).shape == (3, 2)
    changed = images.clone()
    changed[:, :, :32, :32] = 5.0  # the top left corner
    before, after = patch_logit_map(model, images), patch_logit_map(model, changed)
    assert before.shape == (2, 2, 32, 32)
    assert not torch.equal(before[..., :4, :4], after[..., :4, :4])
    assert torch.equal(before[..., 16:, 16:], after[..., 16:, 16:])  # the bottom right quarter never sees it


def test_patch_detector_stride_16_has_a_coarser_patch_map_than_stride_8():
    images = torch.randn(1, 3, 256, 256)
    assert patch_logit_map(build_model("patch:resnet10t@8").eval(), images).shape == (1, 2, 32, 32)
    assert patch_logit_map(build_model("patch:resnet10t@16").eval(), images).shape == (1, 2, 16, 16)
    assert patch_logit_map(build_model("patch:resnet10t").eval(), images).shape == (1, 2, 32, 32)


def test_bad_patch_names_say_what_to_fix():
    stride_error = "the output stride after @ must be 2, 4, 8, 16 or 32 (e.g. patch:resnet10t@16)"
    assert model_name_error("patch:resnet10t@3") == stride_error
    assert model_name_error("patch:resnet10t@x") == stride_error
    assert model_name_error("patch:resnet10t@") == stride_error
    assert model_name_error("patch:no_such_net").startswith("not a timm architecture")
    assert model_name_error("patch:resnet10t") is None and model_name_error("patch:resnet10t@16") is None
    assert "patch:ARCH for its patch detector" in model_name_error("resnet10t")
    assert model_name("patch:resnet10t@16") == "patch:resnet10t@16"
    with pytest.raises(argparse.ArgumentTypeError, match=r"invalid choice: 'patch:resnet10t@3'; the output stride"):
        model_name("patch:resnet10t@3")


def test_patch_weights_load_from_a_full_timm_state_dict_and_bad_files_are_refused(tmp_path):
    import timm
    source = timm.create_model("resnet10t", pretrained=False)  # all stages and a 1000-class head, as downloaded
    torch.save(source.state_dict(), tmp_path / "resnet10t.pth")
    model = build_model("patch:resnet10t", weights=tmp_path / "resnet10t.pth")
    kept = model.features.state_dict()
    assert "layer2.0.conv1.weight" in kept and not any(key.startswith(("layer3.", "fc.")) for key in kept)
    for key, value in kept.items():
        assert torch.equal(value, source.state_dict()[key]), key
    assert model.patch_logits.out_channels == 2
    torch.save(SimpleNet().state_dict(), tmp_path / "simplenet.pth")
    with pytest.raises(CheckpointError, match="not a state dict of timm resnet10t"):
        build_model("patch:resnet10t", weights=tmp_path / "simplenet.pth")
    torch.save({**source.state_dict(), "layer5.weight": torch.zeros(1)}, tmp_path / "bigger.pth")
    with pytest.raises(CheckpointError, match=r"1 unexpected, e.g. \['layer5.weight'\]"):
        build_model("patch:resnet10t", weights=tmp_path / "bigger.pth")  # another architecture's extra layers
    torch.save(timm.create_model("resnet14t").state_dict(), tmp_path / "resnet14t.pth")
    for name in ("patch:resnet10t", "timm:resnet10t"):  # same layer names, other shapes
        with pytest.raises(CheckpointError, match=r"not a state dict of timm resnet10t \(size mismatch"):
            build_model(name, weights=tmp_path / "resnet14t.pth")


def test_patch_weights_load_where_the_cut_network_renames_its_layers(tmp_path):
    import timm
    source = timm.create_model("convnext_atto", pretrained=False)
    torch.save(source.state_dict(), tmp_path / "convnext_atto.pth")
    model = build_model("patch:convnext_atto", weights=tmp_path / "convnext_atto.pth")
    assert "stem_0.weight" in model.features.state_dict()  # stem.0 of the whole network
    assert torch.equal(model.features.state_dict()["stem_0.weight"], source.state_dict()["stem.0.weight"])
    assert torch.equal(model.features.state_dict()["stages_1.downsample.1.weight"],
                       source.state_dict()["stages.1.downsample.1.weight"])
    assert "state_dict" not in model.pretrained_cfg


def test_patch_model_trains_saves_reloads_and_explains(tiny_fakes, tmp_path):
    pytest.importorskip("pytorch_grad_cam")
    code = train_main.main(["-m", "patch:resnet10t", "-d", str(tiny_fakes), "-b", "8", "-e", "1", "--device", "cpu",
                            "--out-dir", str(tmp_path / "out"), "--checkpoint-dir", str(tmp_path / "ck"),
                            "--cache-dir", str(tmp_path / "cache")])
    assert code == 0
    assert (tmp_path / "out" / "tiny_fakes_patch-resnet10t_AdamW.json").is_file()
    assert (tmp_path / "ck" / "tiny_fakes_patch-resnet10t_AdamW_last.pt").is_file()
    model, checkpoint = load_trained_model(tmp_path / "ck" / "tiny_fakes_patch-resnet10t_AdamW.pt")
    assert checkpoint["model_name"] == "patch:resnet10t"
    assert type(model).__name__ == "PatchDetector" and not model.training
    assert grad_cam.target_layer_name(model) == "patch_logits"  # the map the mean pools
    images = torch.randn(2, 3, 256, 256)
    maps = grad_cam.grad_cam_maps(images, model, [1, 0])
    assert maps.shape == (2, 256, 256) and np.isfinite(maps).all()


@pytest.mark.parametrize("name, channels", [("SeamNet", 128), ("SeamNet-8x1", 64)])
def test_seamnet_gives_logits_and_a_mask_map_of_its_last_stage(name, channels):
    model = build_model(name)
    assert model_name_error(name) is None and registry.has_mask_head(name)
    assert model.head.fc.in_features == 2 * channels  # average and max pooling side by side
    images = torch.randn(3, 3, 256, 256)
    logits, mask_logits = model(images, with_mask=True)
    assert logits.shape == (3, 2) and mask_logits.shape == (3, 1, 16, 16)  # 4 stride-2 stages: 256 / 16
    assert torch.equal(model(images), logits)
    assert model(torch.randn(1, 3, 128, 96)).shape == (1, 2)  # global pooling: any size
    assert not any(isinstance(layer, (torch.nn.MaxPool2d, torch.nn.AvgPool2d)) for layer in model.modules())


def test_seamnet_default_is_sized_like_simplenet():
    model = build_model("SeamNet")
    assert count(model) == 294_643
    convolutions = [layer for layer in model.features.modules() if isinstance(layer, torch.nn.Conv2d)]
    assert [layer.stride for layer in convolutions[::2]] == [(2, 2)] * 4 and len(convolutions) == 8
    assert all(isinstance(block[1], torch.nn.BatchNorm2d) for block in model.features)


@pytest.mark.parametrize("name", ["SeamNet-0x2", "SeamNet-16", "SeamNet-16x99", "seam:not_a_model"])
def test_seamnet_names_that_build_nothing_are_refused_with_the_fix(name):
    assert model_name_error(name)
    with pytest.raises(argparse.ArgumentTypeError, match="invalid choice"):
        model_name(name)


def test_seamnet_learns_a_few_steps_with_its_mask_head():
    torch.manual_seed(0)
    model = build_model("SeamNet-8x1")
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    images = torch.rand(8, 3, 64, 64)
    labels = torch.tensor([0, 1] * 4)
    images[labels == 1, :, 16:48, 16:48] += 1.0  # the fakes carry a bright square: the mask
    masks = torch.zeros(8, 1, 64, 64)
    masks[labels == 1, :, 16:48, 16:48] = 1.0
    from fakedetect.train.trainer import mask_loss
    losses = []
    for _ in range(30):
        logits, mask_logits = model(images, with_mask=True)
        loss = torch.nn.functional.cross_entropy(logits, labels) + mask_loss(mask_logits, masks)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_seam_prefix_puts_a_timm_backbone_under_the_seamnet_head():
    model = build_model("seam:resnet18")
    logits, mask_logits = model(torch.randn(2, 3, 256, 256), with_mask=True)
    assert logits.shape == (2, 2) and mask_logits.shape == (2, 1, 8, 8)
    assert model.head.fc.in_features == 2 * 512
    assert registry.model_normalization("seam:resnet18", model) == ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


def test_channels_last_on_the_cpu_only_for_seamnet():
    assert precision.precision_settings("SeamNet", "cpu") == (None, True)
    assert precision.precision_settings("SeamNet", "cpu", "off") == (None, False)
    assert precision.precision_settings("SimpleNet", "cpu") == (None, False)
    assert precision.precision_settings("timm:resnet18", "cpu") == (None, False)
