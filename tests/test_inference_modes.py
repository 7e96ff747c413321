"""Sliding-window, flip and multi-scale prediction (`predict`) against a reference written here.

The model is a hand-built module whose logits are a known function of the pixel's colour and of its
position inside the network's input, so window averaging, flips and scales all change the answer. The
reference recomputes that function in float64 numpy and does the window bookkeeping with plain loops
over an independently derived list of window origins; resizing uses torch's interpolate (the same
primitive, not the logic under test). `predict` returns argmax trainIds, so the comparison is on
pixels whose reference top-2 margin leaves room for float32 rounding.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from citypipe.data.dataset import IMAGENET_MEAN, IMAGENET_STD
from citypipe.prediction.inference import InferenceConfig, predict

K = 5  # classes: predict takes num_classes, so a small K keeps many pixels near class borders
MARGIN = 1e-3  # reference top-2 gap above which float32 and float64 must agree on the argmax
_rng = np.random.default_rng(20)
W_COLOUR = _rng.normal(0, 1, (K, 3))  # (K, 3): logits from the normalised colour
W_COL = _rng.normal(0, 0.3, K)  # (K,): per input column: left-right asymmetric
W_ROW = _rng.normal(0, 0.3, K)  # (K,): per input row
W_MEAN = _rng.normal(0, 2, K)  # (K,): times the input's mean red value (like ASPP's image pooling): padding matters


def inference_config(**fields) -> InferenceConfig:
    """InferenceConfig by keyword."""
    return InferenceConfig(**fields)


class PositionModel(nn.Module):
    """logits[k, i, j] = W_COLOUR[k] . x[:, i, j] + W_COL[k] * j + W_ROW[k] * i + W_MEAN[k] * mean(x[0]),
    with (i, j) and the mean taken in the input it is given."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("colour", torch.tensor(W_COLOUR, dtype=torch.float32))
        self.register_buffer("col", torch.tensor(W_COL, dtype=torch.float32))
        self.register_buffer("row", torch.tensor(W_ROW, dtype=torch.float32))
        self.register_buffer("mean", torch.tensor(W_MEAN, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        h, w = x.shape[-2:]
        cols = torch.arange(w, dtype=x.dtype).view(1, 1, 1, w)
        rows = torch.arange(h, dtype=x.dtype).view(1, 1, h, 1)
        out = torch.einsum("kc,nchw->nkhw", self.colour, x) + self.mean.view(1, K, 1, 1) * x[:, :1].mean((2, 3), keepdim=True)
        return {"out": out + self.col.view(1, K, 1, 1) * cols + self.row.view(1, K, 1, 1) * rows}  # (N, K, h, w)


# ---- the reference: float64 numpy, plain loops -------------------------------------------------------------

def ref_logits(x: np.ndarray) -> np.ndarray:
    """(3, h, w) normalised -> (K, h, w), the model's formula."""
    _, h, w = x.shape
    out = np.zeros((K, h, w))
    for k in range(K):
        out[k] = sum(W_COLOUR[k, c] * x[c] for c in range(3))
        out[k] += W_COL[k] * np.arange(w)[None, :] + W_ROW[k] * np.arange(h)[:, None] + W_MEAN[k] * x[0].mean()
    return out


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(0, keepdims=True))
    return e / e.sum(0, keepdims=True)


def ref_forward(x: np.ndarray, flip: bool) -> np.ndarray:
    """Logits, or with flip the mean of the softmax of the image and of the mirrored image (mirrored back)."""
    if not flip:
        return ref_logits(x)
    return (softmax(ref_logits(x)) + softmax(ref_logits(x[:, :, ::-1]))[:, :, ::-1]) / 2


def window_origins(length: int, crop: int, stride: int) -> list[int]:
    """Origins k * stride clipped to the last full window: every pixel covered, the last window flush with the end."""
    last = max(length - crop, 0)
    return sorted({min(k * stride, last) for k in range(math.ceil(last / stride) + 1)})


def ref_slide(x: np.ndarray, crop: tuple[int, int], stride: tuple[int, int], flip: bool) -> np.ndarray:
    """Each pixel's score: the mean over the windows that contain it; images smaller than the window are
    zero-padded (in normalised units) at the bottom and right."""
    _, h, w = x.shape
    padded = np.zeros((3, max(h, crop[0]), max(w, crop[1])))
    padded[:, :h, :w] = x
    H, W = padded.shape[1:]
    total, count = np.zeros((K, H, W)), np.zeros((H, W))
    for y in window_origins(H, crop[0], stride[0]):
        for x0 in window_origins(W, crop[1], stride[1]):
            total[:, y:y + crop[0], x0:x0 + crop[1]] += ref_forward(padded[:, y:y + crop[0], x0:x0 + crop[1]], flip)
            count[y:y + crop[0], x0:x0 + crop[1]] += 1
    assert count.min() >= 1
    return (total / count)[:, :h, :w]


def resize(a: np.ndarray, size: tuple[int, int], antialias: bool) -> np.ndarray:
    t = torch.from_numpy(np.ascontiguousarray(a))[None]
    return F.interpolate(t, size=size, mode="bilinear", align_corners=False, antialias=antialias)[0].numpy()


def ref_scores(image: np.ndarray, mode: str, size, crop, stride, flip: bool, scales) -> np.ndarray:
    """(3, H, W) uint8 -> (K, H, W) the scores `predict` takes the argmax of: per scale, logits (or flip-averaged
    softmax) upsampled to (H, W); over several scales the sum of softmaxes (flip: of the averaged softmaxes)."""
    mean = np.array(IMAGENET_MEAN).reshape(3, 1, 1) * 255
    std = np.array(IMAGENET_STD).reshape(3, 1, 1) * 255
    x = (image.astype(np.float64) - mean) / std
    height, width = image.shape[1:]
    total = np.zeros((K, height, width))
    for scale in scales:
        base = size if mode == "whole" else (height, width)
        scaled_size = (round(base[0] * scale), round(base[1] * scale))
        scaled = x if scaled_size == (height, width) else resize(x, scaled_size, antialias=True)
        out = ref_forward(scaled, flip) if mode == "whole" else ref_slide(scaled, crop, stride, flip)
        out = resize(out, (height, width), antialias=False)
        total += softmax(out) if len(scales) > 1 and not flip else out
    return total


def image_of(height: int, width: int, seed: int) -> np.ndarray:
    """(3, H, W) uint8: smooth colour ramps plus noise, so neighbouring pixels disagree only sometimes."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    base = np.stack([xx * 255 / max(width - 1, 1), yy * 255 / max(height - 1, 1), (xx + yy) * 7 % 256])
    return np.clip(base + rng.normal(0, 30, base.shape), 0, 255).astype(np.uint8)


def check_against_reference(image: np.ndarray, **config) -> np.ndarray:
    """Asserts predict == reference argmax wherever the reference has a clear winner; returns the prediction."""
    got = predict(PositionModel().eval(), torch.from_numpy(image)[None], inference_config(**config), K)[0].numpy()
    scores = ref_scores(image, config["mode"], config["size"], config["crop_size"], config["stride"], config["flip"],
                        config["scales"])
    top2 = np.sort(scores, axis=0)[-2:]
    clear = top2[1] - top2[0] > MARGIN
    assert clear.mean() > 0.95, "test data too close to ties to be a check"
    want = scores.argmax(0)
    assert got.shape == image.shape[1:] and got.dtype == np.uint8
    np.testing.assert_array_equal(got[clear], want[clear])
    return got


def config_for(mode="slide", size=(0, 0), crop_size=(8, 10), stride=(3, 7), flip=False, scales=(1.0,)) -> dict:
    return {"mode": mode, "size": size, "crop_size": crop_size, "stride": stride, "flip": flip, "scales": scales}


def test_window_origins_cover_every_pixel_and_end_flush():
    assert window_origins(13, 8, 3) == [0, 3, 5]  # 5 = 13 - 8: the last window overlaps the previous one by 6
    assert window_origins(23, 10, 7) == [0, 7, 13]
    assert window_origins(6, 8, 3) == [0]
    assert window_origins(16, 8, 8) == [0, 8]


@pytest.mark.parametrize("height, width, crop, stride", [
    (13, 23, (8, 10), (3, 7)),  # uneven overlaps: rows at 0, 3, 5; columns at 0, 7, 13
    (16, 24, (8, 12), (8, 12)),  # windows that tile exactly, no overlap
    (6, 7, (8, 10), (3, 7)),  # image smaller than the window on both axes: zero padding
    (6, 30, (8, 10), (4, 6)),  # smaller on one axis only
])
def test_slide_averages_the_windows_that_cover_each_pixel(height, width, crop, stride):
    image = image_of(height, width, seed=height * width)
    slide = check_against_reference(image, **config_for(crop_size=crop, stride=stride))
    whole = check_against_reference(image, **config_for(mode="whole", size=(height, width)))
    # the model depends on position within its input, so a window sees other logits than the whole image
    assert (slide != whole).any()


@pytest.mark.parametrize("mode", ["whole", "slide"])
def test_flip_averages_softmax_of_the_mirrored_prediction(mode):
    image = image_of(13, 23, seed=1)
    flipped = check_against_reference(image, **config_for(mode=mode, size=(13, 23), flip=True))
    plain = check_against_reference(image, **config_for(mode=mode, size=(13, 23), flip=False))
    assert (flipped != plain).any()  # the model is left-right asymmetric (W_COL), so flip must matter
    # flipping the image mirrors the flip-averaged prediction exactly (up to ties): a check without the reference
    mirrored = predict(PositionModel().eval(), torch.from_numpy(image[:, :, ::-1].copy())[None],
                       inference_config(**config_for(mode=mode, size=(13, 23), flip=True)), K)[0].numpy()
    assert (mirrored[:, ::-1] == flipped).mean() > 0.95


@pytest.mark.parametrize("mode, scales, flip", [
    ("whole", (0.5, 1.0, 1.5), False),
    ("whole", (0.75, 1.25), True),
    ("slide", (0.75, 1.0, 1.25), False),
    ("slide", (0.6, 1.4), True),
])
def test_multi_scale_sums_softmaxes_over_scales(mode, scales, flip):
    image = image_of(20, 30, seed=2)
    multi = check_against_reference(image, **config_for(mode=mode, size=(16, 24), flip=flip, scales=scales))
    single = check_against_reference(image, **config_for(mode=mode, size=(16, 24), flip=flip))
    assert (multi != single).any()


def test_whole_resizes_to_the_network_size_and_back():
    image = image_of(20, 30, seed=3)
    native = check_against_reference(image, **config_for(mode="whole", size=(20, 30)))
    smaller = check_against_reference(image, **config_for(mode="whole", size=(10, 14)))
    assert (native != smaller).any()


def test_a_batch_is_predicted_image_by_image():
    images = np.stack([image_of(13, 23, seed=s) for s in (4, 5)])
    config = inference_config(**config_for(flip=True, scales=(0.75, 1.0)))
    batch = predict(PositionModel().eval(), torch.from_numpy(images), config, K)
    for i in range(2):
        np.testing.assert_array_equal(batch[i].numpy(), predict(PositionModel().eval(), torch.from_numpy(images[i:i + 1]),
                                                                config, K)[0].numpy())


def test_a_slide_scale_that_rounds_the_image_to_zero_pixels_is_one_line_naming_the_scale():
    from citypipe.errors import CitypipeError

    image = torch.from_numpy(image_of(20, 30, seed=6)[None])
    config = inference_config(**config_for(mode="slide", size=(16, 24), scales=(1.0, 0.02)))
    with pytest.raises(CitypipeError, match=r"^inference.scales 0.02: a 20x30 image would be 0x1 pixels"):
        predict(PositionModel().eval(), image, config, K)
