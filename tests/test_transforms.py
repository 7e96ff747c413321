"""TrainTransform on synthetic image/label pairs: padding, nearest labels, alignment, photometric, crops."""
import numpy as np
import pytest
from PIL import Image

from citypipe.data.transforms import (
    TrainTransform,
    _crop_accepted,
    photometric_distortion,
)

# trainId -> a colour far from the others, so an image pixel tells which class it was painted with
PALETTE = {0: (255, 0, 0), 7: (0, 255, 0), 11: (0, 0, 255), 18: (255, 255, 0)}


def transform(base, crop, scale=1.0, flip_prob=0.0, photometric=False, cat_max_ratio=1.0) -> TrainTransform:
    return TrainTransform(base, (scale, scale), crop, flip_prob, photometric, cat_max_ratio)


def block_scene(height: int, width: int, block: int, seed: int) -> tuple[Image.Image, Image.Image]:
    """Blocks of random classes; the image paints each class in its palette colour."""
    rng = np.random.default_rng(seed)
    ids = np.array(list(PALETTE), np.uint8)
    grid = rng.choice(ids, size=(-(-height // block), -(-width // block)))
    label = np.kron(grid, np.ones((block, block), np.uint8))[:height, :width]  # (H, W)
    image = np.zeros((height, width, 3), np.uint8)
    for train_id, colour in PALETTE.items():
        image[label == train_id] = colour
    return Image.fromarray(image), Image.fromarray(label)


def interior(label: np.ndarray, radius: int) -> np.ndarray:
    """Pixels whose (2r+1)^2 neighbourhood has one label: away from class edges, where bilinear blur can't
    reach, and from the crop's border, where the bilinear filter also sees the source beyond the window."""
    padded = np.pad(label, radius, constant_values=254)
    same = np.ones(label.shape, bool)
    for dy in range(2 * radius + 1):
        for dx in range(2 * radius + 1):
            same &= padded[dy:dy + label.shape[0], dx:dx + label.shape[1]] == label
    return same


@pytest.mark.parametrize("source, crop", [((20, 30), (32, 48)), ((32, 20), (32, 48)), ((10, 60), (16, 16))])
def test_small_images_are_padded_with_0_and_labels_with_255(source, crop):
    rng = np.random.default_rng(0)
    image = rng.integers(1, 256, (*source, 3), dtype=np.uint8)
    label = rng.integers(0, 19, source, dtype=np.uint8)
    out_image, out_label = transform(source, crop)(Image.fromarray(image), Image.fromarray(label), rng)
    h, w = min(source[0], crop[0]), min(source[1], crop[1])
    assert out_image.shape == (*crop, 3) and out_label.shape == crop
    assert out_image.dtype == np.uint8 and out_label.dtype == np.uint8
    pad = np.ones(crop, bool)
    pad[:h, :w] = False
    assert (out_label[pad] == 255).all() and (out_image[pad] == 0).all()
    assert (out_label[~pad] != 255).all() and (out_image[~pad] > 0).all()


@pytest.mark.parametrize("scale", [0.6, 1.0, 1.37, 2.1])
@pytest.mark.parametrize("cat_max_ratio", [1.0, 0.75])
def test_labels_are_resampled_nearest_so_no_new_values_appear(scale, cat_max_ratio):
    rng = np.random.default_rng(1)
    ids = np.array([0, 5, 13, 18], np.uint8)
    label = rng.choice(ids, size=(48, 80))  # per-pixel noise: any interpolation would make new values
    image = rng.integers(0, 256, (48, 80, 3), dtype=np.uint8)
    _, out_label = transform((48, 80), (32, 64), scale, cat_max_ratio=cat_max_ratio)(
        Image.fromarray(image), Image.fromarray(label), rng)
    assert set(np.unique(out_label)) <= {0, 5, 13, 18, 255}
    assert len(set(np.unique(out_label)) - {255}) == 4


@pytest.mark.parametrize("scale", [0.5, 1.0, 1.6])
@pytest.mark.parametrize("hflip", [0.0, 1.0])
@pytest.mark.parametrize("seed", [0, 1])
def test_image_and_label_stay_aligned_under_scale_and_flip(scale, hflip, seed):
    image, label = block_scene(64, 128, 16, seed)
    # the source is 64x128 and base_size 48x96: the transform also rescales before its random scale
    out_image, out_label = transform((48, 96), (32, 64), scale, hflip)(image, label, np.random.default_rng(seed))
    padded = out_label == 255
    assert (out_image[padded] == 0).all()
    inner = interior(out_label, 2) & ~padded
    assert inner.sum() > 0.15 * (~padded).sum()
    expected = np.zeros_like(out_image)
    for train_id, colour in PALETTE.items():
        expected[out_label == train_id] = colour
    diff = np.abs(out_image.astype(int) - expected.astype(int)).max(-1)  # (h, w)
    assert diff[inner].max() <= 8
    assert np.median(diff[~padded]) <= 8  # near the edges too, the colour mostly agrees with the label


def test_photometric_distortion_keeps_uint8_range_and_changes_values():
    # black and white pixels: any wrap-around past 0 or 255 would show as bright blacks or dark whites
    image = np.zeros((8, 16, 3), np.uint8)
    image[:, 8:] = 255
    for seed in range(30):
        out = photometric_distortion(image, np.random.default_rng(seed))
        assert out.dtype == np.uint8 and out.shape == image.shape
        assert out[:, :8].max() <= (0 + 32) * 1.5  # brightness +32 then contrast x1.5 at most
        assert out[:, 8:].min() >= (255 - 32) * 0.5  # brightness -32 then contrast x0.5 at most
    colourful = np.random.default_rng(0).integers(0, 256, (8, 16, 3), dtype=np.uint8)
    outs = [photometric_distortion(colourful, np.random.default_rng(seed)) for seed in range(10)]
    assert sum(not np.array_equal(out, colourful) for out in outs) >= 5


@pytest.mark.parametrize("counts, ratio, accepted", [
    ({255: 100}, 0.75, False),  # only ignore: mmseg draws again
    ({3: 100}, 0.75, False),  # one class
    ({3: 100, 255: 50}, 0.75, False),  # one class, ignore excluded from the share
    ({3: 75, 4: 25}, 0.75, False),  # share exactly at the ratio: mmseg wants it below
    ({3: 74, 4: 26}, 0.75, True),
    ({3: 2, 4: 2, 255: 100}, 0.75, True),  # ignore does not count in the share
    ({3: 90, 4: 10}, 0.95, True),
])
def test_crop_acceptance_follows_mmseg_random_crop(counts, ratio, accepted):
    label = np.concatenate([np.full(n, value, np.uint8) for value, n in counts.items()]).reshape(1, -1)
    assert _crop_accepted(label, ratio) is accepted


@pytest.mark.parametrize("seed", range(10))
def test_all_ignore_crops_are_retried(seed):
    # 32x64 label, crop 32x32: only windows starting at x <= 15 see the two-class stripe on the left
    label = np.full((32, 64), 255, np.uint8)
    label[0::2, :16], label[1::2, :16] = 3, 4
    image = np.zeros((32, 64, 3), np.uint8)
    _, out_label = transform((32, 64), (32, 32), cat_max_ratio=0.75)(
        Image.fromarray(image), Image.fromarray(label), np.random.default_rng(seed))
    assert set(np.unique(out_label)) == {3, 4, 255}


def position_image(height: int, width: int) -> Image.Image:
    """Pixel (y, x) has colour (y, x, 0): the crop's first pixel tells the window it was cut from."""
    ys, xs = np.mgrid[:height, :width]
    return Image.fromarray(np.stack([ys, xs, np.zeros_like(ys)], -1).astype(np.uint8))


def reference_windows(seed: int, tries: int) -> tuple[list[tuple[int, int]], np.random.Generator]:
    """The draws TrainTransform makes: scale, then (y, x) per try on a 64x128 image with 32x32 crops."""
    rng = np.random.default_rng(seed)
    rng.uniform(1.0, 1.0)
    return [(int(rng.integers(0, 33)), int(rng.integers(0, 97))) for _ in range(tries)], rng


@pytest.mark.parametrize("seed", range(4))
def test_ten_tries_then_the_last_window(seed):
    one_class = Image.fromarray(np.full((64, 128), 5, np.uint8))  # no window is ever accepted
    rng = np.random.default_rng(seed)
    out_image, _ = transform((64, 128), (32, 32), cat_max_ratio=0.75)(position_image(64, 128), one_class, rng)
    windows, reference = reference_windows(seed, 10)
    assert tuple(out_image[0, 0, :2]) == windows[-1]
    reference.random()  # the flip draw
    assert rng.random() == reference.random()


@pytest.mark.parametrize("seed", range(4))
def test_an_accepted_first_window_draws_as_without_cat_max_ratio(seed):
    stripes = np.zeros((64, 128), np.uint8)
    stripes[:, 1::2] = 1  # every window is half 0, half 1
    outputs = []
    for cat_max_ratio in (0.75, 1.0):
        rng = np.random.default_rng(seed)
        out_image, out_label = transform((64, 128), (32, 32), flip_prob=0.5, photometric=True, cat_max_ratio=cat_max_ratio)(
            position_image(64, 128), Image.fromarray(stripes), rng)
        outputs.append((out_image, out_label, rng.random()))
    assert np.array_equal(outputs[0][0], outputs[1][0]) and np.array_equal(outputs[0][1], outputs[1][1])
    assert outputs[0][2] == outputs[1][2]
    windows, _ = reference_windows(seed, 1)
    plain, _ = transform((64, 128), (32, 32), cat_max_ratio=0.75)(
        position_image(64, 128), Image.fromarray(stripes), np.random.default_rng(seed))
    assert tuple(plain[0, 0, :2]) == windows[0]
