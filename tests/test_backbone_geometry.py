"""The dilated backbone's geometry: equal to torchvision's own dilated ResNet-50/101, and to mmseg's
basic-block rule for ResNet-18/34, with the same weights, in eval mode."""
import pytest
import torch
import torch.nn.functional as F
import torchvision

from citypipe.models.backbone import ResNetFeatures

# torchvision's replace_stride_with_dilation for (layer2, layer3, layer4)
TORCHVISION_DILATION = {8: [False, True, True], 16: [False, False, True]}
# mmseg's ResNet arguments for layer1..layer4: D8 (deeplabv3plus_r50-d8) and D16
MMSEG_STRIDES = {8: (1, 2, 1, 1), 16: (1, 2, 2, 1)}
MMSEG_DILATIONS = {8: (1, 1, 2, 4), 16: (1, 1, 1, 2)}


def randomise_batchnorm(resnet: torch.nn.Module, seed: int) -> None:
    """Non-trivial BN statistics and affine parameters, so a BN that is skipped or misplaced shows."""
    generator = torch.Generator().manual_seed(seed)
    for module in resnet.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            n = module.num_features
            module.running_mean.copy_(torch.randn(n, generator=generator) * 0.1)
            module.running_var.copy_(torch.rand(n, generator=generator) + 0.5)
            module.weight.data.copy_(torch.rand(n, generator=generator) + 0.5)
            module.bias.data.copy_(torch.randn(n, generator=generator) * 0.1)


def ours_with_weights_of(reference: torch.nn.Module, name: str, output_stride: int) -> ResNetFeatures:
    ours = ResNetFeatures(name, output_stride, "none", "")
    renamed = {key.replace("conv1.", "stem.0.", 1) if key.startswith("conv1.") else
               key.replace("bn1.", "stem.1.", 1) if key.startswith("bn1.") else key: value
               for key, value in reference.state_dict().items() if not key.startswith("fc.")}
    ours.load_state_dict(renamed)
    return ours.eval()


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    return float((actual - expected).norm() / expected.norm())


@pytest.mark.parametrize("name", ["resnet50", "resnet101"])
@pytest.mark.parametrize("output_stride", [8, 16])
def test_bottleneck_backbones_equal_torchvisions_dilated_resnet(name, output_stride):
    torch.manual_seed(0)
    builder = getattr(torchvision.models, name)
    reference = builder(weights=None, replace_stride_with_dilation=TORCHVISION_DILATION[output_stride]).eval()
    randomise_batchnorm(reference, 1)
    ours = ours_with_weights_of(reference, name, output_stride)
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(2))  # (N, 3, H, W)
    with torch.no_grad():
        features = ours(x)
        low = reference.layer1(reference.maxpool(reference.relu(reference.bn1(reference.conv1(x)))))
        mid = reference.layer3(reference.layer2(low))
        out = reference.layer4(mid)
    assert features["out"].shape[-2:] == (64 // output_stride, 64 // output_stride)
    for key, expected in (("low", low), ("aux", mid), ("out", out)):
        assert features[key].shape == expected.shape
        assert relative_error(features[key], expected) < 1e-5, key


def test_contracted_rates_of_a_dilated_resnet50():
    ours = ResNetFeatures("resnet50", 8, "none", "")
    assert [block.conv2.dilation[0] for block in ours.layer3] == [1, 2, 2, 2, 2, 2]
    assert [block.conv2.dilation[0] for block in ours.layer4] == [2, 4, 4]
    assert all(m.stride == (1, 1) for layer in (ours.layer3, ours.layer4) for m in layer.modules()
               if isinstance(m, torch.nn.Conv2d))


def batchnorm(x: torch.Tensor, bn: torch.nn.BatchNorm2d) -> torch.Tensor:
    return F.batch_norm(x, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps)


def mmseg_basic_resnet(resnet: torch.nn.Module, x: torch.Tensor, output_stride: int) -> list[torch.Tensor]:
    """ResNet-18/34 by mmseg's definition, written out with functional ops on torchvision's weights.

    mmseg's ResLayer with contract_dilation=True gives a dilated stage's first block dilation // 2, the
    others the stage's dilation; its BasicBlock puts stride and dilation on conv1 (3x3, padding =
    dilation) and keeps conv2 a plain 3x3 (padding 1); the shortcut's 1x1 conv takes the stage's stride.
    Returns layer1..layer4's outputs.
    """
    x = F.max_pool2d(F.relu(batchnorm(F.conv2d(x, resnet.conv1.weight, stride=2, padding=3), resnet.bn1)), 3, 2, 1)
    outputs = []
    layers = (resnet.layer1, resnet.layer2, resnet.layer3, resnet.layer4)
    for layer, stride, dilation in zip(layers, MMSEG_STRIDES[output_stride], MMSEG_DILATIONS[output_stride]):
        for index, block in enumerate(layer):
            block_stride = stride if index == 0 else 1
            rate = (dilation // 2 if dilation > 1 else dilation) if index == 0 else dilation
            out = F.relu(batchnorm(F.conv2d(x, block.conv1.weight, stride=block_stride, padding=rate, dilation=rate),
                                   block.bn1))
            out = batchnorm(F.conv2d(out, block.conv2.weight, padding=1), block.bn2)
            identity = x
            if block.downsample is not None:
                identity = batchnorm(F.conv2d(x, block.downsample[0].weight, stride=block_stride), block.downsample[1])
            x = F.relu(out + identity)
        outputs.append(x)
    return outputs


@pytest.mark.parametrize("name", ["resnet18", "resnet34"])
@pytest.mark.parametrize("output_stride", [8, 16])
def test_basic_block_backbones_follow_mmsegs_rule(name, output_stride):
    torch.manual_seed(0)
    reference = getattr(torchvision.models, name)(weights=None).eval()
    randomise_batchnorm(reference, 3)
    ours = ours_with_weights_of(reference, name, output_stride)
    x = torch.randn(1, 3, 64, 96, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        features = ours(x)
        layer1, _, layer3, layer4 = mmseg_basic_resnet(reference, x, output_stride)
    assert features["out"].shape[-2:] == (64 // output_stride, 96 // output_stride)
    for key, expected in (("low", layer1), ("aux", layer3), ("out", layer4)):
        assert features[key].shape == expected.shape
        assert relative_error(features[key], expected) < 1e-5, key


def test_the_reference_tells_the_old_geometry_apart():
    """The check has teeth: every 3x3 conv at the full rate (the old geometry) misses the reference."""
    torch.manual_seed(0)
    reference = torchvision.models.resnet18(weights=None).eval()
    ours = ours_with_weights_of(reference, "resnet18", 8)
    for layer, rate in ((ours.layer3, 2), (ours.layer4, 4)):
        for module in layer.modules():
            if isinstance(module, torch.nn.Conv2d) and module.kernel_size == (3, 3):
                module.dilation, module.padding = (rate, rate), (rate, rate)
    x = torch.randn(1, 3, 64, 96, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        expected = mmseg_basic_resnet(reference, x, 8)[3]
        assert relative_error(ours(x)["out"], expected) > 1e-2
