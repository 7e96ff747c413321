"""CitySynth images: turn a scene's polygons into a photo-like RGB image.

Each object gets its own colour drawn around its class's colour (some classes overlap on purpose:
road/sidewalk/parking greys, vegetation/terrain greens, overcast sky/building), a class texture,
shading for windows and wheels, then the whole image gets lighting, shadow, blur and noise, so
colour alone cannot segment it.
"""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from citypipe.synth.scene import SceneObject

# (mean RGB choices, per-object jitter std, texture kind, texture amplitude)
_LOOKS: dict[str, tuple[tuple[tuple[int, int, int], ...], float, str, float]] = {
    "sky": (((128, 170, 222), (188, 194, 200), (150, 180, 210)), 10, "gradient", 30),
    "building": (((150, 140, 122), (118, 110, 100), (172, 162, 150), (140, 84, 64), (100, 100, 106)), 14, "windows", 40),
    "wall": (((160, 154, 140), (130, 128, 120)), 16, "coarse", 18),
    "fence": (((120, 110, 90), (140, 140, 135)), 18, "stripes", 35),
    "road": (((88, 88, 94), (100, 98, 100)), 10, "fine", 10),
    "sidewalk": (((140, 130, 126), (120, 116, 116)), 14, "tiles", 14),
    "parking": (((110, 104, 110),), 10, "fine", 10),
    "rail track": (((96, 84, 74),), 8, "stripes", 30),
    "ground": (((112, 100, 82),), 10, "fine", 12),
    "terrain": (((118, 130, 72), (140, 130, 90)), 16, "fine", 22),
    "vegetation": (((62, 100, 42), (80, 110, 50), (50, 80, 40)), 16, "leaves", 34),
    "pole": (((112, 112, 112), (70, 80, 70)), 16, "none", 0),
    "traffic sign": (((200, 30, 30), (30, 60, 180), (220, 220, 220), (230, 200, 40)), 12, "none", 0),
    "traffic light": (((34, 38, 34), (60, 60, 30)), 8, "none", 0),
    "person": (((40, 40, 60), (150, 40, 40), (200, 190, 170), (60, 90, 60), (30, 30, 30)), 20, "person", 0),
    "rider": (((40, 40, 60), (200, 60, 30), (30, 30, 30)), 20, "person", 0),
    "car": (((24, 24, 24), (200, 200, 200), (150, 24, 24), (24, 44, 120), (110, 110, 116), (230, 230, 230)), 12, "vehicle", 0),
    "truck": (((200, 200, 190), (60, 80, 60), (180, 90, 40)), 12, "vehicle", 0),
    "bus": (((230, 200, 40), (200, 40, 40), (236, 236, 236)), 10, "vehicle", 0),
    "train": (((200, 200, 210), (210, 60, 50)), 10, "vehicle", 0),
    "motorcycle": (((40, 40, 40), (160, 30, 30)), 12, "none", 0),
    "bicycle": (((30, 30, 30), (60, 60, 90)), 12, "stripes", 25),
    "ego vehicle": (((40, 40, 46),), 6, "fine", 4),
    "static": (((90, 80, 70), (60, 90, 60)), 16, "coarse", 12),
    "dynamic": (((100, 70, 50),), 16, "none", 0),
    "out of roi": (((70, 70, 70),), 20, "coarse", 20),
    "rectification border": (((0, 0, 0),), 0, "none", 0),
}


def object_index_map(objects: list[SceneObject], height: int, width: int) -> np.ndarray:
    """(H, W) int32: 1 + index of the object visible at each pixel (0 = none), drawn as the labels are."""
    canvas = Image.new("I", (width, height), 0)
    drawer = ImageDraw.Draw(canvas)
    for index, obj in enumerate(objects):
        drawer.polygon([tuple(p) for p in obj.polygon], fill=index + 1)
    return np.asarray(canvas, dtype=np.int32)


def _texture_fields(rng: np.random.Generator, height: int, width: int) -> dict[str, np.ndarray]:
    """(H, W) float fields in about [-1, 1], one per texture kind."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    fine = rng.standard_normal((height, width)).astype(np.float32)
    small = rng.standard_normal((max(2, height // 8), max(2, width // 8))).astype(np.float32)
    coarse = np.asarray(Image.fromarray(small).resize((width, height), Image.BILINEAR))
    cell = max(3.0, width / 64)
    windows = ((xs % (2 * cell) < cell) & (ys % (2.5 * cell) < 1.2 * cell)).astype(np.float32) * -1.2 + 0.3
    stripes = np.sign(np.sin(xs * np.pi / max(1.5, width / 200)))
    tiles = ((xs % (2 * cell) < 0.5) | (ys % cell < 0.5)).astype(np.float32) * -1.5 + 0.2
    leaves = 0.6 * fine + 0.8 * coarse
    gradient = ys / max(1, height) * 2 - 0.5
    return {"fine": fine, "coarse": coarse, "windows": windows + 0.3 * fine, "stripes": stripes,
            "tiles": tiles + 0.3 * fine, "leaves": leaves, "gradient": gradient, "none": np.zeros_like(fine),
            "vehicle": np.zeros_like(fine), "person": np.zeros_like(fine)}


def _object_shading(objects: list[SceneObject], index_map: np.ndarray) -> np.ndarray:
    """(H, W) multiplicative shading: dark windows and wheels on vehicles, a skin-toned head on people."""
    height, width = index_map.shape
    top = np.zeros(len(objects) + 1, np.float32)
    span = np.ones(len(objects) + 1, np.float32)
    kind = np.zeros(len(objects) + 1, np.int8)  # 1 vehicle, 2 person
    for i, obj in enumerate(objects, start=1):
        ys = [p[1] for p in obj.polygon]
        top[i], span[i] = min(ys), max(1.0, max(ys) - min(ys))
        kind[i] = {"vehicle": 1, "person": 2}.get(_LOOKS[obj.label][2], 0)
    rows = np.arange(height, dtype=np.float32)[:, None]
    relative = (rows - top[index_map]) / span[index_map]  # 0 at the object's top, 1 at its bottom
    shade = np.ones((height, width), np.float32)
    vehicle, person = kind[index_map] == 1, kind[index_map] == 2
    shade[vehicle & (relative > 0.12) & (relative < 0.42)] = 0.4
    shade[vehicle & (relative > 0.85)] = 0.25
    shade[person & (relative > 0.55)] = 0.7
    return shade


def render_image(objects: list[SceneObject], index_map: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(H, W, 3) uint8 street photo for the scene whose object index map is given."""
    height, width = index_map.shape
    fields = _texture_fields(rng, height, width)
    colour = np.zeros((len(objects) + 1, 3), np.float32)
    amplitude = np.zeros(len(objects) + 1, np.float32)
    texture_of = np.zeros(len(objects) + 1, np.int16)
    kinds = list(fields)
    for i, obj in enumerate(objects, start=1):
        means, jitter, texture, amp = _LOOKS[obj.label]
        colour[i] = np.asarray(means[rng.integers(len(means))], np.float32) + rng.normal(0, jitter + 1e-6, 3)
        amplitude[i], texture_of[i] = amp, kinds.index(texture)
    texture_stack = np.stack([fields[k] for k in kinds])  # (K, H, W)
    texture = np.take_along_axis(texture_stack, texture_of[index_map][None].astype(np.int64), 0)[0]
    image = colour[index_map] + (amplitude[index_map] * texture)[..., None]
    image *= _object_shading(objects, index_map)[..., None]
    # lighting: a global exposure, a left-right gradient and one soft shadow across the ground
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    light = rng.uniform(0.7, 1.25) * (1 + rng.uniform(-0.2, 0.2) * (xs / width - 0.5))
    slope, offset = rng.uniform(-1, 1), rng.uniform(0.2, 0.8)
    shadow = (xs / width - offset) + slope * (ys / height - 0.7) > 0
    light = light * np.where(shadow & (ys > 0.45 * height), rng.uniform(0.55, 0.85), 1.0)
    image = image * light[..., None] + rng.normal(0, 1, 3).astype(np.float32) * 6  # colour cast
    blurred = Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).filter(
        ImageFilter.GaussianBlur(radius=rng.uniform(0.3, 1.0) * max(1.0, width / 512)))
    noisy = np.asarray(blurred, np.float32) + rng.normal(0, rng.uniform(2, 7), (height, width, 3))
    return np.clip(noisy, 0, 255).astype(np.uint8)
