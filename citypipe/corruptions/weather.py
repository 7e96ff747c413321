"""Weather corruptions (ImageNet-C): snow, spatter, fog, frost. (H, W, 3) uint8 + numpy Generator -> uint8."""
from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np
from PIL import Image

from citypipe.errors import CitypipeError
from citypipe.corruptions.canny import water_distance
from citypipe.corruptions.filters import gaussian_filter, motion_blur_layer, to_uint8

# (mean, std of the flake field, zoom, threshold, streak radius, streak sigma, share of the image kept)
SNOW = ((0.1, 0.3, 3, 0.5, 10, 4, 0.8), (0.2, 0.3, 2, 0.5, 12, 4, 0.7), (0.55, 0.3, 4, 0.9, 12, 8, 0.7),
        (0.55, 0.3, 4.5, 0.85, 12, 8, 0.65), (0.55, 0.3, 2.5, 0.85, 12, 12, 0.55))
# (mean, std of the liquid field, its blur sigma, threshold, water intensity | mud blur sigma, 0 water / 1 mud)
SPATTER = ((0.65, 0.3, 4, 0.69, 0.6, 0), (0.65, 0.3, 3, 0.68, 0.6, 0), (0.65, 0.3, 2, 0.68, 0.5, 0),
           (0.65, 0.3, 1, 0.65, 1.5, 1), (0.67, 0.4, 1, 0.65, 1.5, 1))
FOG = ((1.5, 2), (2.0, 2), (2.5, 1.7), (2.5, 1.5), (3.0, 1.4))  # (fog strength, wibble decay of the fractal)
FROST = ((1, 0.4), (0.8, 0.6), (0.7, 0.7), (0.65, 0.7), (0.6, 0.75))  # (image weight, frost weight)
# the reference draws the frost picture with randint(5): frost6.jpg is never used
FROST_FILES = ("frost1.png", "frost2.png", "frost3.png", "frost4.jpg", "frost5.jpg")
WATER_BGR = (175 / 255.0, 238 / 255.0, 238 / 255.0)  # pale turquoise, added to channels 0, 1, 2 as listed
MUD_RGB = (63 / 255.0, 42 / 255.0, 20 / 255.0)


def linear_zoom(x: np.ndarray, zoom: float) -> np.ndarray:
    """The reference's clipped_zoom on (H, W): the centre ceil(H/z) x ceil(W/z) crop, scaled by `zoom` with
    scipy.ndimage.zoom(order=1)'s bilinear map (corners onto corners) and its arithmetic: each of the four
    neighbours as value * weight_y * weight_x, summed in raster order, so thresholds downstream flip nowhere."""
    coords, fracs, inside = [], [], []
    for axis in (0, 1):
        n = x.shape[axis]
        crop = int(math.ceil(n / float(zoom)))
        top = (n - crop) // 2
        out = int(round(crop * zoom))
        coord = np.arange(out) * ((crop - 1) / (out - 1))
        low = np.minimum(np.floor(coord).astype(int), crop - 2)
        coords.append(top + low)
        fracs.append(coord - low)
        # scipy's mode 'constant' gives 0 where k * (crop-1)/(out-1) rounds past the last cell: a black last row
        # or column of the flake field in the reference, kept
        inside.append(coord <= crop - 1)
    (rows, fy), (cols, fx) = (coords[0][:, None], fracs[0][:, None]), (coords[1][None, :], fracs[1][None, :])
    out = np.zeros((rows.shape[0], cols.shape[1]))
    for a, wy in ((0, 1 - fy), (1, fy)):
        for b, wx in ((0, 1 - fx), (1, fx)):
            out += x[rows + a, cols + b] * wy * wx
    return out * (inside[0][:, None] & inside[1][None, :])


def snow(image: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    mean, std, zoom, threshold, radius, sigma, kept = SNOW[severity - 1]
    height, width = image.shape[:2]
    flakes = linear_zoom(rng.normal(mean, std, (height, width)), zoom)
    flakes[flakes < threshold] = 0
    flakes = motion_blur_layer(np.clip(flakes, 0, 1), radius, sigma, rng.uniform(-135, -45))
    flakes = (np.round(flakes * 255).astype(np.uint8) / 255.0)[:height, :width, None]  # (H, W, 1)
    x = image.astype(np.float32) / np.float32(255)
    grey = (x[..., 0] * np.float32(0.299) + x[..., 1] * np.float32(0.587) + x[..., 2] * np.float32(0.114))[..., None]
    x = kept * x + (1 - kept) * np.maximum(x, grey * 1.5 + 0.5)  # whitened, as under an overcast sky
    return to_uint8(np.clip(x + flakes + flakes[::-1, ::-1], 0, 1) * 255)


def spatter(image: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    mean, std, sigma, threshold, strength, mud = SPATTER[severity - 1]
    x = image.astype(np.float32) / np.float32(255)
    liquid = gaussian_filter(rng.normal(mean, std, image.shape[:2]), sigma)  # (H, W)
    if mud:
        m = gaussian_filter((liquid > threshold).astype(np.float64), strength)
        m[m < 0.8] = 0
        return to_uint8(np.clip(x * (1 - m[..., None]) + np.array(MUD_RGB) * m[..., None], 0, 1) * 255)
    liquid[liquid < threshold] = 0
    level = (liquid * 255).astype(np.uint8)  # (H, W); liquid stays below 1 after the blur
    m = level * water_distance(level)  # (H, W) float32: drops brighter where far from a drop's edge
    m = m / m.max() * strength if m.max() > 0 else m
    return to_uint8(np.clip(x + m[..., None] * np.array(WATER_BGR, dtype=np.float32), 0, 1) * 255)


def plasma_fractal(size: int, decay: float, rng: np.random.Generator) -> np.ndarray:
    """(size, size) diamond-square height map in [0, 1] (size a power of two), the draws in the reference's order:
    per scale, the square centres then the two diamond grids, each a uniform field in [-wibble, wibble)."""
    height = np.zeros((size, size))
    step, wibble = size, 100.0

    def wibbled(mean_of_four: np.ndarray) -> np.ndarray:
        return mean_of_four / 4 + wibble * rng.uniform(-wibble, wibble, mean_of_four.shape)

    while step >= 2:
        half = step // 2
        corners = height[0:size:step, 0:size:step]
        square = corners + np.roll(corners, -1, axis=0)
        square = square + np.roll(square, -1, axis=1)
        height[half:size:step, half:size:step] = wibbled(square)
        centres = height[half:size:step, half:size:step]
        corners = height[0:size:step, 0:size:step]
        # the sums grouped as the reference groups them: float addition is not associative
        height[0:size:step, half:size:step] = wibbled((centres + np.roll(centres, 1, axis=0))
                                                      + (corners + np.roll(corners, -1, axis=1)))
        height[half:size:step, 0:size:step] = wibbled((centres + np.roll(centres, 1, axis=1))
                                                      + (corners + np.roll(corners, -1, axis=0)))
        step //= 2
        wibble /= decay
    height -= height.min()
    peak = height.max()
    return height / peak if peak > 0 else height  # a 1-pixel map is flat: no fog pattern, not NaN


def fog(image: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    strength, decay = FOG[severity - 1]
    height, width = image.shape[:2]
    size = 1 << (max(height, width) - 1).bit_length()  # next power of two
    x = image / 255.0
    peak = x.max()
    x = x + strength * plasma_fractal(size, decay, rng)[:height, :width, None]
    return to_uint8(np.clip(x * peak / (peak + strength), 0, 1) * 255)


def frost_folder() -> Path:
    """The frost pictures shipped in the imagecorruptions package (Apache-2.0), found without importing it."""
    spec = importlib.util.find_spec("imagecorruptions")
    folder = Path(spec.origin).parent / "frost" if spec is not None and spec.origin else None
    if folder is None or not (folder / FROST_FILES[0]).is_file():
        raise CitypipeError("frost: needs the frost pictures of the imagecorruptions package "
                            "(pip install imagecorruptions==1.1.2)")
    return folder


def bicubic_rows(x: np.ndarray, out_size: int, start: int, count: int, axis: int) -> np.ndarray:
    """Rows start..start+count of `x` resized to `out_size` along `axis`: OpenCV's INTER_CUBIC (a = -0.75,
    half-pixel centres, border repeated)."""
    n = x.shape[axis]
    coords = (np.arange(start, start + count) + 0.5) * (n / out_size) - 0.5
    base = np.floor(coords).astype(int)
    t = coords - base
    a = -0.75
    weights = [((a * (t + 1) - 5 * a) * (t + 1) + 8 * a) * (t + 1) - 4 * a,
               ((a + 2) * t - (a + 3)) * t * t + 1,
               ((a + 2) * (1 - t) - (a + 3)) * (1 - t) * (1 - t) + 1]
    weights.append(1 - weights[0] - weights[1] - weights[2])
    shape = [-1 if i == axis else 1 for i in range(x.ndim)]
    return sum(np.take(x, np.clip(base + k - 1, 0, n - 1), axis=axis) * w.reshape(shape) for k, w in enumerate(weights))


def frost(image: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    kept, frost_weight = FROST[severity - 1]
    height, width = image.shape[:2]
    picture = np.asarray(Image.open(frost_folder() / FROST_FILES[rng.integers(5)]).convert("RGB"), dtype=np.float64)
    ph, pw = picture.shape[:2]
    # scaled so that it covers the image with 10% to spare, then a random window of the image's size
    scale = max(1.0, height / ph if ph < height else 1.0, width / pw if pw < width else 1.0) * 1.1
    new_h, new_w = int(math.ceil(ph * scale)), int(math.ceil(pw * scale))
    top, left = rng.integers(0, new_h - height), rng.integers(0, new_w - width)
    window = bicubic_rows(bicubic_rows(picture, new_h, top, height, 0), new_w, left, width, 1)
    window = np.clip(np.round(window), 0, 255)  # OpenCV rounds and saturates the resized uint8 picture
    return to_uint8(np.clip(kept * image + frost_weight * window, 0, 255))
