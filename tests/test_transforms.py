"""TrainTransform on synthetic image/label pairs: padding, nearest labels, alignment, photometric, crops."""
import numpy as np
import pytest
from PIL import Image

from citypipe.data.photometric import (
    PhotometricPlan,
    apply_photometric_plan,
    draw_photometric_plan,
    hsv_to_rgb,
    mmseg_photometric_distortion,
    rgb_to_hsv,
)
from citypipe.data.transforms import (
    TrainTransform,
    _crop_accepted,
    bilinear_resized_crop,
    photometric_distortion,
)

# trainId -> a colour far from the others, so an image pixel tells which class it was painted with
PALETTE = {0: (255, 0, 0), 7: (0, 255, 0), 11: (0, 0, 255), 18: (255, 255, 0)}


def transform(base, crop, scale=1.0, flip_prob=0.0, photometric="none", cat_max_ratio=1.0, resize="antialias") -> TrainTransform:
    return TrainTransform(base, (scale, scale), crop, flip_prob, photometric, cat_max_ratio, resize)


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
        out_image, out_label = transform((64, 128), (32, 32), flip_prob=0.5, photometric="simple", cat_max_ratio=cat_max_ratio)(
            position_image(64, 128), Image.fromarray(stripes), rng)
        outputs.append((out_image, out_label, rng.random()))
    assert np.array_equal(outputs[0][0], outputs[1][0]) and np.array_equal(outputs[0][1], outputs[1][1])
    assert outputs[0][2] == outputs[1][2]
    windows, _ = reference_windows(seed, 1)
    plain, _ = transform((64, 128), (32, 32), cat_max_ratio=0.75)(
        position_image(64, 128), Image.fromarray(stripes), np.random.default_rng(seed))
    assert tuple(plain[0, 0, :2]) == windows[0]


# ---- train.resize: bilinear is cv2's INTER_LINEAR (mmseg's RandomResize), bit for bit ----

@pytest.mark.parametrize("source, scaled, corner, crop", [
    ((64, 128), (32, 64), (0, 0), (32, 64)),  # exactly half: cv2 switches to INTER_AREA, the same numbers
    ((64, 128), (38, 77), (3, 9), (32, 64)),  # shrink, no antialiasing
    ((64, 128), (88, 175), (40, 100), (32, 64)),  # enlarge, window inside
    ((64, 128), (134, 269), (102, 205), (32, 64)),  # window at the bottom-right border
    ((97, 131), (50, 300), (20, 250), (40, 64)),  # window past the border: padded with 0
    ((1024, 2048), (700, 1400), (100, 300), (512, 1024)),  # the recipe's sizes
])
def test_bilinear_resized_crop_is_cv2_inter_linear(source, scaled, corner, crop):
    cv2 = pytest.importorskip("cv2")
    image = np.random.default_rng(0).integers(0, 256, (*source, 3), dtype=np.uint8)
    expected = cv2.resize(image, scaled[::-1], interpolation=cv2.INTER_LINEAR)[corner[0]:corner[0] + crop[0],
                                                                             corner[1]:corner[1] + crop[1]]
    out = bilinear_resized_crop(image, scaled, corner, crop)
    h, w = expected.shape[:2]
    assert out.shape == (*crop, 3) and np.array_equal(out[:h, :w], expected)
    assert (out[h:] == 0).all() and (out[:, w:] == 0).all()


@pytest.mark.parametrize("scale", [0.6, 1.0, 1.37])
def test_bilinear_resize_changes_the_image_filter_only(scale):
    """Same draws, same window, same labels; the image is cv2.resize's, cropped at the drawn window."""
    cv2 = pytest.importorskip("cv2")
    image, label = block_scene(64, 128, 16, 3)
    crop = (32, 48)
    outputs = {}
    for resize in ("antialias", "bilinear"):
        rng = np.random.default_rng(7)
        outputs[resize] = (*transform((64, 128), crop, scale, flip_prob=0.5, resize=resize)(image, label, rng), rng.random())
    assert np.array_equal(outputs["antialias"][1], outputs["bilinear"][1]) and outputs["antialias"][2] == outputs["bilinear"][2]
    rng = np.random.default_rng(7)
    rng.uniform(scale, scale)
    scaled = (round(64 * scale), round(128 * scale))
    y, x = int(rng.integers(0, max(scaled[0] - crop[0], 0) + 1)), int(rng.integers(0, max(scaled[1] - crop[1], 0) + 1))
    expected = cv2.resize(np.asarray(image), scaled[::-1], interpolation=cv2.INTER_LINEAR)[y:y + crop[0], x:x + crop[1]]
    if rng.random() < 0.5:
        expected = expected[:, ::-1]
    assert np.array_equal(outputs["bilinear"][0][:expected.shape[0], :expected.shape[1]], expected)


# ---- train.photometric: mmseg is mmseg's PhotoMetricDistortion ----

def cv2_reference_photometric(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """PhotoMetricDistortion as mmseg's transforms.py defines it, with cv2 for HSV and the draws from `rng` in
    mmseg's order (numpy's randint(2) coins; randint(-18, 18) excludes 18). Our images are RGB, mmseg's BGR:
    RGB2HSV of the one is BGR2HSV of the other."""
    cv2 = pytest.importorskip("cv2")

    def convert(values, alpha=1.0, beta=0.0):
        return np.clip(values.astype(np.float32) * alpha + beta, 0, 255).astype(np.uint8)

    def contrast(img):
        return convert(img, alpha=rng.uniform(0.5, 1.5)) if rng.integers(2) else img

    img = convert(image, beta=rng.uniform(-32, 32)) if rng.integers(2) else image
    mode = rng.integers(2)
    if mode == 1:
        img = contrast(img)
    if rng.integers(2):
        hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV)
        hsv[:, :, 1] = convert(hsv[:, :, 1], alpha=rng.uniform(0.5, 1.5))
        img = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    if rng.integers(2):
        hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV)
        hsv[:, :, 0] = (hsv[:, :, 0].astype(int) + rng.integers(-18, 18)) % 180
        img = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    if mode == 0:
        img = contrast(img)
    return img


@pytest.mark.parametrize("seed", range(40))
def test_mmseg_photometric_equals_the_reference_draw_for_draw(seed):
    image = np.random.default_rng(100 + seed).integers(0, 256, (16, 64, 3), dtype=np.uint8)  # rows of 64: see hsv_to_rgb
    ours_rng, reference_rng = np.random.default_rng(seed), np.random.default_rng(seed)
    out = mmseg_photometric_distortion(image, ours_rng)
    assert out.dtype == np.uint8 and out.shape == image.shape
    assert np.array_equal(out, cv2_reference_photometric(image, reference_rng))
    assert ours_rng.random() == reference_rng.random()  # the same number of draws: later draws are unchanged


def test_hsv_conversions_equal_cv2():
    cv2 = pytest.importorskip("cv2")
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (512, 512, 3), dtype=np.uint8)
    rgb[0, :256] = np.arange(256)[:, None]  # greys, where hue and saturation are 0
    rgb[1, :6] = [[255, 0, 0], [255, 255, 0], [0, 255, 0], [0, 255, 255], [0, 0, 255], [255, 0, 255]]
    assert np.array_equal(rgb_to_hsv(rgb), cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV))
    hsv = np.stack([rng.integers(0, 180, (512, 512)), rng.integers(0, 256, (512, 512)),
                    rng.integers(0, 256, (512, 512))], -1).astype(np.uint8)  # rows of 512: cv2's SIMD path
    assert np.array_equal(hsv_to_rgb(hsv), cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB))


def direct_rgb_to_hsv(image: np.ndarray) -> np.ndarray:
    """cv2's 8-bit RGB -> HSV formulas computed directly, as photometric.py did before its tables."""
    from citypipe.data.photometric import _HDIV, _ROUND, _SDIV, _SHIFT

    r, g, b = (image[..., i].astype(np.int32) for i in range(3))
    v = np.maximum(np.maximum(r, g), b)
    diff = v - np.minimum(np.minimum(r, g), b)
    s = (diff * _SDIV[v] + _ROUND) >> _SHIFT
    h = np.where(v == r, g - b, np.where(v == g, b - r + 2 * diff, r - g + 4 * diff))
    h = (h * _HDIV[diff] + _ROUND) >> _SHIFT
    h += np.where(h < 0, 180, 0).astype(np.int32)
    return np.stack([h, s, v], axis=-1).astype(np.uint8)


def direct_hsv_to_rgb(hsv: np.ndarray) -> np.ndarray:
    from citypipe.data.photometric import _hsv_factors

    v = hsv[..., 2].astype(np.float32) * (np.float32(1) / np.float32(255))
    factor = _hsv_factors().reshape(256, 256, 3)[hsv[..., 0], hsv[..., 1]]
    return np.trunc(v[..., None] * factor * np.float32(255)).astype(np.uint8)


EVERY_TRIPLE = np.stack(np.meshgrid(*[np.arange(256, dtype=np.uint8)] * 3, indexing="ij"), -1).reshape(4096, 4096, 3)


def test_the_hsv_tables_give_the_direct_formulas_on_every_colour():
    """All 2^24 RGB colours, and all 2^24 (H, S, V) triples (H >= 180 too): cv2's equality above is
    checked on samples where cv2 is installed; this holds the tables to the formulas everywhere."""
    for rows in np.array_split(np.arange(4096), 4):  # about 1 GB of temporaries at a time
        part = EVERY_TRIPLE[rows]
        assert np.array_equal(rgb_to_hsv(part), direct_rgb_to_hsv(part))
        assert np.array_equal(hsv_to_rgb(part), direct_hsv_to_rgb(part))


@pytest.mark.parametrize("seed", range(5))
def test_convert_through_its_table_equals_the_float_formula(seed):
    from citypipe.data.photometric import _convert, _convert_values

    rng = np.random.default_rng(seed)
    values = rng.integers(0, 256, (64, 96, 3), dtype=np.uint8)
    for alpha, beta in ((rng.uniform(0.5, 1.5), 0.0), (1.0, rng.uniform(-32, 32)), (rng.uniform(0.5, 1.5), 0.0)):
        assert np.array_equal(_convert(values, alpha, beta), _convert_values(values, alpha, beta))
        assert np.array_equal(_convert(values[..., 1], alpha, beta), _convert_values(values[..., 1], alpha, beta))


@pytest.mark.parametrize("step", ["brightness", "contrast", "saturation", "hue"])
def test_each_photometric_step_alone_against_cv2(step):
    cv2 = pytest.importorskip("cv2")
    image = np.random.default_rng(1).integers(0, 256, (16, 64, 3), dtype=np.uint8)  # cv2's SIMD rows (64 pixels)
    value = {"brightness": 27.3, "contrast": 1.37, "saturation": 0.61, "hue": -13}[step]
    plan = PhotometricPlan(**{"brightness": None, "contrast": None, "contrast_first": False, "saturation": None,
                              "hue": None, step: value})
    out = apply_photometric_plan(image, plan)
    if step in ("brightness", "contrast"):
        alpha, beta = (1.0, value) if step == "brightness" else (value, 0.0)
        expected = np.clip(image.astype(np.float32) * alpha + beta, 0, 255).astype(np.uint8)  # clip, then truncate
    else:
        hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV)
        if step == "saturation":
            hsv[..., 1] = np.clip(hsv[..., 1].astype(np.float32) * value, 0, 255).astype(np.uint8)
        else:
            hsv[..., 0] = (hsv[..., 0].astype(int) + value) % 180
        expected = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    assert np.array_equal(out, expected)


def test_photometric_draws_have_mmsegs_statistics():
    """Over 4000 seeds: each step on with probability 1/2, contrast first half the time, brightness
    U(-32, 32), contrast and saturation U(0.5, 1.5), hue uniform over the 36 integers -18..17."""
    plans = [draw_photometric_plan(np.random.default_rng(seed)) for seed in range(4000)]
    tolerance = 4.5 * (0.25 / 4000) ** 0.5  # 4.5 binomial standard deviations
    for name in ("brightness", "contrast", "saturation", "hue"):
        on = np.array([getattr(p, name) for p in plans if getattr(p, name) is not None], float)
        assert abs(len(on) / 4000 - 0.5) < tolerance, name
        low, high = {"brightness": (-32, 32), "contrast": (0.5, 1.5), "saturation": (0.5, 1.5), "hue": (-18, 17)}[name]
        assert on.min() >= low and on.max() <= high
        assert abs(on.mean() - (low + high) / 2) < 4.5 * (high - low) / (12 * len(on)) ** 0.5, name
    assert abs(np.mean([p.contrast_first for p in plans]) - 0.5) < tolerance
    hues = [p.hue for p in plans if p.hue is not None]
    assert set(hues) == set(range(-18, 18))
    counts = np.bincount(np.array(hues) + 18)
    assert counts.min() > 0.5 * len(hues) / 36  # no value starved


def test_simple_photometric_is_unchanged_for_the_demo():
    """photometric: simple is the demo's distortion as before: a TrainTransform applies exactly
    photometric_distortion to the flipped crop, with the generator's next draws."""
    image, label = block_scene(32, 48, 8, 0)
    rng = np.random.default_rng(5)
    out, _ = transform((32, 48), (32, 48), flip_prob=0.5, photometric="simple")(image, label, rng)
    reference = np.random.default_rng(5)
    reference.uniform(1.0, 1.0)
    reference.integers(0, 1), reference.integers(0, 1)
    crop = np.asarray(image)
    if reference.random() < 0.5:
        crop = crop[:, ::-1]
    assert np.array_equal(out, photometric_distortion(np.ascontiguousarray(crop), reference))
    assert rng.random() == reference.random()
