import os
import urllib.error
from pathlib import Path

import pytest
import torch
import torchvision
import yaml

from citypipe.errors import CitypipeError
from citypipe.models.checkpoint import load_checkpoint, save_checkpoint
from citypipe.models.deeplab import ModelConfig, aspp_rates, build_model
from citypipe.params import params_from_dict
from citypipe.profiles import apply_profile, read_profile

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("arch", ["deeplabv3", "deeplabv3plus"])
@pytest.mark.parametrize("backbone", ["resnet18", pytest.param("resnet50", marks=pytest.mark.slow)])  # 13-33 s each at load 17
@pytest.mark.parametrize("output_stride", [8, 16])
def test_output_shapes(arch, backbone, output_stride):
    model = build_model(ModelConfig(arch, backbone, output_stride, aux_head=True)).train()
    out = model(torch.randn(2, 3, 64, 96))
    assert out["out"].shape == (2, 19, 64, 96) and out["aux"].shape == (2, 19, 64, 96)
    features = model.backbone(torch.randn(1, 3, 64, 96))
    assert features["out"].shape[-2:] == (64 // output_stride, 96 // output_stride)
    assert features["low"].shape[-2:] == (16, 24)
    model.eval()
    assert set(model(torch.randn(1, 3, 64, 96))) == {"out"}


def test_aspp_rates_double_at_output_stride_8():
    assert aspp_rates(16) == (6, 12, 18) and aspp_rates(8) == (12, 24, 36)
    model = build_model(ModelConfig("deeplabv3plus", "resnet18", 8, False))
    dilations = sorted({m.dilation[0] for m in model.head.aspp.modules() if isinstance(m, torch.nn.Conv2d)})
    assert dilations == [1, 12, 24, 36]
    assert model.head.project_low[0].out_channels == 48


def test_local_weights_file_in_torchvision_keys_is_loaded(tmp_path):
    reference = torchvision.models.resnet18(weights=None)
    torch.nn.init.constant_(reference.conv1.weight, 0.125)
    path = tmp_path / "resnet18.pth"
    torch.save(reference.state_dict(), path)
    model = build_model(ModelConfig("deeplabv3", "resnet18", 16, False), weights_file=str(path))
    assert torch.equal(model.backbone.stem[0].weight, reference.conv1.weight)
    assert torch.equal(model.backbone.layer4[1].conv2.weight, reference.layer4[1].conv2.weight)


def test_weights_file_errors(tmp_path):
    with pytest.raises(CitypipeError, match="model.weights_file: .* not found"):
        build_model(ModelConfig("deeplabv3", "resnet18", 16, False), weights_file=str(tmp_path / "missing.pth"))
    path = tmp_path / "resnet50.pth"
    torch.save(torchvision.models.resnet50(weights=None).state_dict(), path)
    with pytest.raises(CitypipeError, match="do not fit"):
        build_model(ModelConfig("deeplabv3", "resnet18", 16, False), weights_file=str(path))
    os.truncate(path, path.stat().st_size // 2)
    with pytest.raises(CitypipeError, match=r"model.weights_file: .*resnet50.pth: cannot load \("):
        build_model(ModelConfig("deeplabv3", "resnet18", 16, False), weights_file=str(path))
    torch.save([1, 2], path)
    with pytest.raises(CitypipeError, match="holds a list, expected a state dict"):
        build_model(ModelConfig("deeplabv3", "resnet18", 16, False), weights_file=str(path))


def fake_downloads(monkeypatch, marker: float) -> list:
    """Every weights enum's get_state_dict returns a fresh torchvision model of its backbone, conv1 = marker."""
    calls = []

    def fake_get_state_dict(self, progress=True, check_hash=True):
        calls.append(self)
        builder = {torchvision.models.ResNet18_Weights: torchvision.models.resnet18,
                   torchvision.models.ResNet34_Weights: torchvision.models.resnet34,
                   torchvision.models.ResNet50_Weights: torchvision.models.resnet50,
                   torchvision.models.ResNet101_Weights: torchvision.models.resnet101}[type(self)]
        resnet = builder(weights=None)
        torch.nn.init.constant_(resnet.conv1.weight, marker)
        return resnet.state_dict()

    monkeypatch.setattr(torchvision.models.WeightsEnum, "get_state_dict", fake_get_state_dict)
    return calls


def test_the_profile_fetches_torchvision_v1_weights(monkeypatch):
    calls = fake_downloads(monkeypatch, 0.25)
    text, _ = apply_profile((REPO / "params.yaml").read_text(), read_profile(REPO / "profiles" / "cityscapes.yaml"))
    model = params_from_dict(yaml.safe_load(text)).model
    config = ModelConfig.from_params(model)
    built = build_model(config, model.pretrained, model.weights_file)
    assert calls == [torchvision.models.ResNet50_Weights.IMAGENET1K_V1]
    assert bool((built.backbone.stem[0].weight == 0.25).all())


@pytest.mark.parametrize("backbone, pretrained, expected", [
    ("resnet18", "IMAGENET1K_V1", torchvision.models.ResNet18_Weights.IMAGENET1K_V1),
    ("resnet50", "IMAGENET1K_V1", torchvision.models.ResNet50_Weights.IMAGENET1K_V1),
    ("resnet50", "IMAGENET1K_V2", torchvision.models.ResNet50_Weights.IMAGENET1K_V2),
    ("resnet18", "none", None),
])
def test_pretrained_names_torchvisions_weights_enum(monkeypatch, backbone, pretrained, expected):
    calls = fake_downloads(monkeypatch, 0.5)
    built = build_model(ModelConfig("deeplabv3", backbone, 16, False), pretrained)
    assert calls == ([expected] if expected else [])
    assert bool((built.backbone.stem[0].weight == 0.5).all()) is (expected is not None)


@pytest.mark.parametrize("backbone", ["resnet18", "resnet34"])
def test_v2_weights_for_resnet18_34_are_a_clear_error(monkeypatch, backbone):
    calls = fake_downloads(monkeypatch, 0.5)
    with pytest.raises(CitypipeError, match=f"model.pretrained: IMAGENET1K_V2 does not exist for {backbone} "
                                            r"\(torchvision's ResNet\d+_Weights has IMAGENET1K_V1\)"):
        build_model(ModelConfig("deeplabv3", backbone, 16, False), "IMAGENET1K_V2")
    assert calls == []


def test_unreachable_weights_give_a_clear_way_out(monkeypatch):
    def offline(self, progress=True, check_hash=True):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torchvision.models.WeightsEnum, "get_state_dict", offline)
    with pytest.raises(CitypipeError, match="model.pretrained: none .*model.weights_file"):
        build_model(ModelConfig("deeplabv3", "resnet18", 16, False), "IMAGENET1K_V1")


def test_checkpoint_round_trip_and_mismatch_messages(tmp_path):
    config = ModelConfig("deeplabv3plus", "resnet18", 16, False)
    model = build_model(config)
    path = tmp_path / "ck.pt"
    save_checkpoint(path, {"model": model.state_dict(), "model_config": dict(config.__dict__), "epoch": 3})
    state = load_checkpoint(path, expected=config)
    assert state["epoch"] == 3
    with pytest.raises(CitypipeError, match="arch='deeplabv3plus' but params ask for arch='deeplabv3'"):
        load_checkpoint(path, expected=ModelConfig("deeplabv3", "resnet18", 16, False))
    with pytest.raises(CitypipeError, match="num_classes=19 but params ask for num_classes=7"):
        load_checkpoint(path, expected=ModelConfig("deeplabv3plus", "resnet18", 16, False, num_classes=7))
    with pytest.raises(CitypipeError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "none.pt")


def test_checkpoints_with_pickled_code_are_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"model": {}, "model_config": {}, "payload": ModelConfig("a", "b", 16, False)}, path)
    with pytest.raises(CitypipeError, match="cannot load checkpoint"):
        load_checkpoint(path)


def test_saved_checkpoint_bytes_depend_only_on_the_state(tmp_path):
    """DVC hashes checkpoints: the same state saved twice (atomically, via temporary names) is the same bytes."""
    state = {"model": {"w": torch.arange(6.0)}, "model_config": {}, "epoch": 3}
    save_checkpoint(tmp_path / "a" / "best.pt", state)
    save_checkpoint(tmp_path / "b" / "best.pt", state)
    assert (tmp_path / "a" / "best.pt").read_bytes() == (tmp_path / "b" / "best.pt").read_bytes()
    # the same rows, some of them loaded back (other string objects, as after a resume): the same bytes
    rows = [{"epoch": 1, "loss": 0.5}, {"epoch": 2, "loss": 0.25}]
    save_checkpoint(tmp_path / "c" / "last.pt", {**state, "history": rows})
    reloaded = torch.load(tmp_path / "c" / "last.pt", weights_only=True)
    save_checkpoint(tmp_path / "d" / "last.pt", {**state, "history": [*reloaded["history"][:1], rows[1]]})
    assert (tmp_path / "c" / "last.pt").read_bytes() == (tmp_path / "d" / "last.pt").read_bytes()


@pytest.mark.parametrize("stored, message", [
    (None, r"model format 1, before the current 2 .*delete checkpoints/ and run `dvc repro train`"),  # no entry
    (1, r"model format 1, before the current 2 .*retrain"),
    (3, r"model format 3, newer than this citypipe's 2"),
])
def test_checkpoints_of_another_model_format_are_refused(tmp_path, stored, message):
    """The old geometry has the same weight names and shapes: only the recorded format tells it apart."""
    from citypipe.models.checkpoint import MODEL_FORMAT, load_model

    config = ModelConfig("deeplabv3plus", "resnet18", 8, False)
    state = {"model": build_model(config).state_dict(), "model_config": dict(config.__dict__)}
    path = tmp_path / "old" / "best.pt"
    save_checkpoint(path, state)
    assert torch.load(path, weights_only=True)["model_format"] == MODEL_FORMAT == 2
    load_model(path, config, torch.device("cpu"))  # the current format loads
    torch.save(state if stored is None else {**state, "model_format": stored}, path)  # as an older/newer citypipe wrote it
    for load in (lambda: load_checkpoint(path), lambda: load_model(path, config, torch.device("cpu"))):
        with pytest.raises(CitypipeError, match=message) as error:
            load()
        assert str(error.value).startswith(f"{path}: ") and "\n" not in str(error.value)


@pytest.mark.parametrize("arch", ["deeplabv3", "deeplabv3plus"])
@pytest.mark.parametrize("head_style", ["torchvision", "mmseg"])
def test_head_styles_and_widths_give_the_same_outputs_shapes(arch, head_style):
    config = ModelConfig(arch, "resnet18", 8, True, head_channels=64, head_style=head_style)
    model = build_model(config).train()
    out = model(torch.randn(2, 3, 64, 96))
    assert out["out"].shape == (2, 19, 64, 96) and out["aux"].shape == (2, 19, 64, 96)
    widths = {m.out_channels for m in model.head.aspp.modules() if isinstance(m, torch.nn.Conv2d) and m.groups == 1}
    assert widths == {64}


def convs_of(module: torch.nn.Module) -> list[torch.nn.Conv2d]:
    return [m for m in module.modules() if isinstance(m, torch.nn.Conv2d)]


def test_mmseg_head_is_mmsegs_depthwise_separable_aspp_head():
    """deeplabv3plus_r50-d8's decode_head: channels 512, dilations (1, 12, 24, 36), c1_channels 48,
    separable 3x3 convs in ASPP and decoder, a 3x3 bottleneck over 5 x 512, Dropout2d(0.1) before conv_seg."""
    torch.manual_seed(0)
    model = build_model(ModelConfig("deeplabv3plus", "resnet50", 8, True, head_channels=512, head_style="mmseg"))
    head = model.head
    branches = [convs_of(branch) for branch in head.aspp.branches]
    assert [(c[0].kernel_size, c[0].dilation[0]) for c in branches] == [((1, 1), 1), ((3, 3), 12), ((3, 3), 24), ((3, 3), 36)]
    for dilated in branches[1:]:  # depthwise (groups = 2048) then pointwise 1x1 to 512
        assert dilated[0].groups == 2048 and dilated[1].kernel_size == (1, 1) and dilated[1].out_channels == 512
    bottleneck = head.aspp.bottleneck[0]
    assert (bottleneck.in_channels, bottleneck.out_channels, bottleneck.kernel_size) == (5 * 512, 512, (3, 3))
    assert head.project_low[0].out_channels == 48
    fuse = convs_of(head.fuse)
    assert [c.groups for c in fuse] == [512 + 48, 1, 512, 1]
    assert not any(isinstance(m, torch.nn.Dropout) for m in model.modules())  # torchvision's ASPP Dropout(0.5) is gone
    for classifier_branch in (head.classifier, model.aux_head[1:]):
        dropout, conv = classifier_branch
        assert isinstance(dropout, torch.nn.Dropout2d) and dropout.p == 0.1
        assert abs(float(conv.weight.detach().std()) - 0.01) < 0.002 and float(conv.bias.detach().abs().max()) == 0.0
    # mmcv's kaiming_init is torch's kaiming_normal_(mode="fan_out", relu): std = sqrt(2 / (out_channels x k x k)),
    # torch's fan_out also for depthwise convs
    for conv in convs_of(head) + convs_of(model.aux_head[0]):
        if conv.out_channels == 19:
            continue
        fan_out = conv.out_channels * conv.kernel_size[0] * conv.kernel_size[1]
        assert float(conv.weight.detach().std()) == pytest.approx((2 / fan_out) ** 0.5, rel=0.1 if conv.weight.numel() > 2000 else 0.4)
        assert conv.bias is None
    aux_conv = model.aux_head[0][0]
    assert (aux_conv.in_channels, aux_conv.out_channels, aux_conv.kernel_size) == (1024, 256, (3, 3))


def test_torchvision_head_keeps_aspp_dropout_and_full_convs():
    model = build_model(ModelConfig("deeplabv3plus", "resnet18", 16, False))
    dropouts = [m for m in model.head.modules() if isinstance(m, torch.nn.Dropout)]
    assert [d.p for d in dropouts] == [0.5]
    assert all(c.groups == 1 for c in convs_of(model.head))
    assert model.head.aspp.project[0].out_channels == 256 and model.head.fuse[1][0].out_channels == 256


def test_a_checkpoint_rebuilds_its_head_style_and_width(tmp_path):
    """Inference builds the model from the checkpoint's config: the head's style and width travel with it."""
    import dataclasses

    from citypipe.models.checkpoint import load_model

    torch.manual_seed(0)
    config = ModelConfig("deeplabv3plus", "resnet18", 16, True, head_channels=32, head_style="mmseg")
    model = build_model(config).eval()
    path = tmp_path / "best.pt"
    save_checkpoint(path, {"model": model.state_dict(), "model_config": dataclasses.asdict(config)})
    loaded = load_model(path, None, torch.device("cpu"))
    assert loaded.config == config
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        assert torch.equal(loaded(x)["out"], model(x)["out"])
    with pytest.raises(CitypipeError, match="checkpoint has head_style='mmseg' but params ask for head_style='torchvision'"):
        load_checkpoint(path, expected=dataclasses.replace(config, head_style="torchvision"))
