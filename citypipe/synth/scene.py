"""CitySynth scene geometry: a street seen from a car, as a list of labelled polygons.

The polygons, in drawing order (later ones occlude earlier ones), are the source of truth: the
label, instance and colour PNGs are rendered from them with cityscapesscripts' drawing code.
Geometry is in image space: a vanishing point (x_v, y_h) on the horizon, and "ground lines" that
run from it to an x position at the bottom row, so things shrink toward the horizon.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

Polygon = list[tuple[float, float]]

# Rare classes that each image cycles through as a guaranteed "guest", so that every split with at
# least this many images covers all 19 evaluated classes while they stay rare in pixel share.
GUEST_CLASSES = ("train", "bus", "truck", "motorcycle", "bicycle")


@dataclass(frozen=True)
class SceneObject:
    label: str  # a cityscapesscripts label name
    polygon: Polygon


@dataclass(frozen=True)
class Street:
    """Ground-plane layout of one scene, in pixels."""

    height: int
    width: int
    horizon: float  # y_h
    vanish_x: float  # x_v
    road_left: float  # x at the bottom row of the left road edge
    road_right: float
    walk_left: float  # x at the bottom row of the outer sidewalk edges
    walk_right: float

    def x_on_line(self, x_bottom: float, y: float) -> float:
        return self.vanish_x + (x_bottom - self.vanish_x) * self.depth(y)

    def y_on_line(self, x_bottom: float, x: float) -> float:
        return self.horizon + (self.height - self.horizon) * (x - self.vanish_x) / (x_bottom - self.vanish_x)

    def depth(self, y: float) -> float:
        """0 at the horizon, 1 at the bottom row: the perspective scale of a ground point."""
        return max(0.0, (y - self.horizon) / (self.height - self.horizon))

    def metre(self, y: float) -> float:
        """Pixels per metre for an object standing at ground row y (1 m = width/12 at the bottom)."""
        return self.depth(y) * self.width / 12.0


def clip_polygon(polygon: Polygon, width: int, height: int) -> Polygon:
    """Sutherland-Hodgman clip to the image rectangle [0, W-1] x [0, H-1]."""
    edges = ((0, 0.0, 1), (0, width - 1.0, -1), (1, 0.0, 1), (1, height - 1.0, -1))
    points = list(polygon)
    for axis, bound, sign in edges:
        if not points:
            break
        inside = lambda p: sign * (p[axis] - bound) >= 0  # noqa: E731
        clipped: Polygon = []
        for i, current in enumerate(points):
            previous = points[i - 1]
            if inside(current) != inside(previous):
                t = (bound - previous[axis]) / (current[axis] - previous[axis])
                clipped.append((previous[0] + t * (current[0] - previous[0]),
                                previous[1] + t * (current[1] - previous[1])))
            if inside(current):
                clipped.append(current)
        points = clipped
    return points


def _ellipse(cx: float, cy: float, rx: float, ry: float, rng: np.random.Generator, n: int = 14,
             jitter: float = 0.15) -> Polygon:
    angles = np.linspace(0, 2 * np.pi, n, endpoint=False)
    radii = 1 + jitter * rng.uniform(-1, 1, n)
    return [(cx + rx * r * np.cos(a), cy + ry * r * np.sin(a)) for a, r in zip(angles, radii)]


def _box(x0: float, y0: float, x1: float, y1: float) -> Polygon:
    return [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]


def make_street(rng: np.random.Generator, height: int, width: int) -> Street:
    vanish_x = width * rng.uniform(0.4, 0.6)
    road_half = width * rng.uniform(0.75, 1.05)
    walk = width * rng.uniform(0.45, 0.65)
    return Street(height, width, horizon=height * rng.uniform(0.38, 0.46), vanish_x=vanish_x,
                  road_left=vanish_x - road_half, road_right=vanish_x + road_half,
                  walk_left=vanish_x - road_half - walk, walk_right=vanish_x + road_half + walk)


def _background(street: Street, rng: np.random.Generator) -> list[SceneObject]:
    """Sky, facades on both sides, the far end of the street."""
    s, H, W = street, street.height, street.width
    objects = [SceneObject("sky", _box(0, 0, W, s.horizon + 2))]
    far_top = s.horizon - H * rng.uniform(0.15, 0.3)
    objects.append(SceneObject("building", _box(s.vanish_x - W * 0.2, far_top, s.vanish_x + W * 0.2, s.horizon + 1)))
    for side, outer in (("left", s.walk_left), ("right", s.walk_right)):
        edge_x = 0.0 if side == "left" else float(W)
        cuts = np.sort(rng.uniform(0, 1, rng.integers(2, 5)))
        stops = [0.0, *cuts, 0.97]
        for a, b in zip(stops[:-1], stops[1:]):
            x0, x1 = edge_x + (s.vanish_x - edge_x) * a, edge_x + (s.vanish_x - edge_x) * b
            base0, base1 = s.y_on_line(outer, x0), s.y_on_line(outer, x1)
            rise = rng.uniform(2.5, 5.0)  # facade height relative to its distance below the horizon
            top0, top1 = s.horizon - (base0 - s.horizon) * rise, s.horizon - (base1 - s.horizon) * rise
            label = "building" if rng.random() > 0.015 else "wall"
            objects.append(SceneObject(label, [(x0, top0), (x1, top1), (x1, base1), (x0, base0)]))
    return objects


def _ground(street: Street, rng: np.random.Generator) -> list[SceneObject]:
    """Road, sidewalks, terrain strips, parking and rail track patches."""
    s, H = street, street.height
    vp = (s.vanish_x, s.horizon)
    objects = [
        SceneObject("road", [vp, (s.road_right, H), (s.road_left, H)]),
        SceneObject("sidewalk", [vp, (s.road_left, H), (s.walk_left, H)]),
        SceneObject("sidewalk", [vp, (s.walk_right, H), (s.road_right, H)]),
    ]
    for outer, inner in ((s.walk_left, s.road_left), (s.walk_right, s.road_right)):
        if rng.random() < 0.6:  # a grass strip on the outer part of the sidewalk
            mid = outer + (inner - outer) * rng.uniform(0.15, 0.35)
            y0, y1 = s.horizon + (H - s.horizon) * rng.uniform(0.1, 0.5), H
            objects.append(SceneObject("terrain", [(s.x_on_line(outer, y0), y0), (s.x_on_line(mid, y0), y0),
                                                   (s.x_on_line(mid, y1), y1), (s.x_on_line(outer, y1), y1)]))
    if rng.random() < 0.3:
        inner, outer = (s.road_left, s.road_left + 0.15 * s.width) if rng.random() < 0.5 else \
            (s.road_right, s.road_right - 0.15 * s.width)
        y0, y1 = s.horizon + (H - s.horizon) * 0.2, s.horizon + (H - s.horizon) * 0.6
        objects.append(SceneObject("parking", [(s.x_on_line(inner, y0), y0), (s.x_on_line(outer, y0), y0),
                                               (s.x_on_line(outer, y1), y1), (s.x_on_line(inner, y1), y1)]))
    if rng.random() < 0.2:
        objects.append(SceneObject("ground", [vp, (s.walk_left, H), (s.walk_left - 0.05 * s.width, H)]))
    return objects


def _street_furniture(street: Street, rng: np.random.Generator) -> list[SceneObject]:
    """Fences and walls along the sidewalk; trees; poles with signs and traffic lights."""
    s, H = street, street.height
    objects: list[SceneObject] = []
    for outer, inner in ((s.walk_left, s.road_left), (s.walk_right, s.road_right)):
        line = outer + (inner - outer) * 0.05
        if rng.random() < 0.55:
            y0, y1 = s.horizon + (H - s.horizon) * rng.uniform(0.05, 0.3), s.horizon + (H - s.horizon) * rng.uniform(0.5, 1.0)
            tall = rng.uniform(0.8, 1.6)  # metres
            label = "fence" if rng.random() < 0.55 else "wall"
            objects.append(SceneObject(label, [(s.x_on_line(line, y0), y0 - tall * s.metre(y0)),
                                               (s.x_on_line(line, y1), y1 - tall * s.metre(y1)),
                                               (s.x_on_line(line, y1), y1), (s.x_on_line(line, y0), y0)]))
        for _ in range(rng.integers(2, 5)):  # trees: trunk and canopy are both vegetation
            y = s.horizon + (H - s.horizon) * rng.uniform(0.08, 0.7)
            x, m = s.x_on_line(outer + (inner - outer) * 0.2, y), s.metre(y)
            canopy_r = m * rng.uniform(2.5, 4.5)
            trunk_top = y - m * rng.uniform(3.0, 5.0)
            objects.append(SceneObject("vegetation", _box(x - 0.2 * m, trunk_top, x + 0.2 * m, y)))
            objects.append(SceneObject("vegetation", _ellipse(x, trunk_top - canopy_r * 0.6, canopy_r, canopy_r * 1.1, rng)))
        for _ in range(rng.integers(1, 4)):
            y = s.horizon + (H - s.horizon) * rng.uniform(0.1, 0.8)
            x, m = s.x_on_line(outer + (inner - outer) * 0.85, y), s.metre(y)
            half, top = max(0.6, 0.09 * m), y - m * rng.uniform(4.0, 6.0)
            objects.append(SceneObject("pole", _box(x - half, top, x + half, y)))
            if rng.random() < 0.5:
                side = 0.45 * m
                objects.append(SceneObject("traffic sign", _box(x - side, top - 0.2 * m, x + side, top + 0.7 * m)))
            else:
                objects.append(SceneObject("traffic light", _box(x - 0.22 * m, top, x + 0.22 * m, top + 1.0 * m)))
        if rng.random() < 0.8:  # bins, bollards: void "static"
            y = s.horizon + (H - s.horizon) * rng.uniform(0.3, 0.9)
            x, m = s.x_on_line(outer + (inner - outer) * 0.6, y), s.metre(y)
            objects.append(SceneObject("static", _box(x - 0.5 * m, y - 1.2 * m, x + 0.5 * m, y)))
    return objects


def _vehicle(label: str, x: float, y: float, m: float, length: float, tall: float) -> Polygon:
    """A side-or-rear view silhouette with a cabin: bottom-centre (x, y), sizes in metres."""
    half, h = length * m / 2, tall * m
    cabin = 0.35 if label == "car" else 0.0
    return [(x - half, y), (x + half, y), (x + half, y - h * (1 - cabin)), (x + half * 0.55, y - h),
            (x - half * 0.6, y - h), (x - half, y - h * (1 - cabin))]


def _person(x: float, y: float, m: float, rng: np.random.Generator) -> Polygon:
    h = m * rng.uniform(1.6, 2.0)
    w = h * 0.34
    return [(x - w * 0.3, y), (x - w * 0.5, y - h * 0.55), (x - w * 0.35, y - h * 0.82), (x - w * 0.18, y - h * 0.86),
            (x - w * 0.2, y - h), (x + w * 0.2, y - h), (x + w * 0.18, y - h * 0.86), (x + w * 0.35, y - h * 0.82),
            (x + w * 0.5, y - h * 0.55), (x + w * 0.3, y), (x, y - h * 0.45)]


def _road_users(street: Street, rng: np.random.Generator, guest: str) -> list[tuple[float, list[SceneObject]]]:
    """Vehicles, riders and pedestrians with the ground row they stand on (sorted far to near later)."""
    s, H = street, street.height
    placed: list[tuple[float, list[SceneObject]]] = []

    def ground_row(low: float, high: float) -> float:
        return s.horizon + (H - s.horizon) * rng.uniform(low, high)

    def on_road(y: float, lateral: float) -> float:
        return s.x_on_line(s.vanish_x + (s.road_right - s.vanish_x) * lateral, y)

    for _ in range(rng.integers(2, 6)):  # parked cars along both kerbs, in side view
        y = ground_row(0.1, 0.85)
        x = on_road(y, rng.choice([-0.85, 0.85]) + rng.uniform(-0.05, 0.05))
        placed.append((y, [SceneObject("car", _vehicle("car", x, y, s.metre(y), rng.uniform(4.0, 4.8), rng.uniform(1.4, 1.6)))]))
    for _ in range(rng.integers(0, 3)):  # cars in the lanes, seen from behind
        y = ground_row(0.05, 0.7)
        x = on_road(y, rng.uniform(-0.5, 0.5))
        placed.append((y, [SceneObject("car", _vehicle("car", x, y, s.metre(y), rng.uniform(1.7, 1.9), rng.uniform(1.4, 1.6)))]))
    for _ in range(rng.integers(3, 9)):  # pedestrians on the sidewalks
        y = ground_row(0.3, 1.0)
        outer, inner = (s.walk_left, s.road_left) if rng.random() < 0.5 else (s.walk_right, s.road_right)
        x = s.x_on_line(outer + (inner - outer) * rng.uniform(0.7, 0.97), y)
        placed.append((y, [SceneObject("person", _person(x, y, s.metre(y), rng))]))

    for _ in range(rng.integers(0, 3)):  # bicycles parked on the sidewalk
        y = ground_row(0.2, 0.9)
        outer, inner = (s.walk_left, s.road_left) if rng.random() < 0.5 else (s.walk_right, s.road_right)
        x, m = s.x_on_line(outer + (inner - outer) * 0.7, y), s.metre(y)
        placed.append((y, [SceneObject("bicycle", _ellipse(x, y - 0.4 * m, 0.9 * m, 0.4 * m, rng, n=10, jitter=0.1))]))
    guests = [guest] + [g for g in GUEST_CLASSES if g != guest and rng.random() < 0.12]
    for label in guests:
        y = ground_row(0.05, 0.45)
        m = s.metre(y)
        if label == "train":  # a tram on its rail track, far down the street
            x = on_road(y, rng.uniform(-0.2, 0.2))
            track = [(x - 4 * m, y), (x + 4 * m, y), (x + 6 * m, y + 0.4 * m), (x - 6 * m, y + 0.4 * m)]
            placed.append((y - 1e-3, [SceneObject("rail track", track)]))
            placed.append((y, [SceneObject("train", _vehicle("train", x, y, m, rng.uniform(6, 9), 3.4))]))
        elif label in ("bus", "truck"):
            x = on_road(y, rng.uniform(-0.4, 0.4))
            length = rng.uniform(2.4, 2.6) if rng.random() < 0.5 else rng.uniform(7, 10)
            placed.append((y, [SceneObject(label, _vehicle(label, x, y, m, length, rng.uniform(3.0, 3.5)))]))
        else:  # a bicycle or motorcycle with its rider
            y = ground_row(0.1, 0.8)
            m = s.metre(y)
            x = on_road(y, rng.choice([-0.6, 0.6]))
            wheel = 0.35 * m
            bike = _ellipse(x, y - wheel, 1.0 * m, wheel, rng, n=10, jitter=0.05)
            rider = _person(x, y - 0.7 * m, m * 0.85, rng)
            placed.append((y, [SceneObject(label, bike), SceneObject("rider", rider)]))
    if rng.random() < 0.15:  # a pram or a cart: void "dynamic"
        y = ground_row(0.3, 0.9)
        x = s.x_on_line(s.walk_right + (s.road_right - s.walk_right) * 0.6, y)
        placed.append((y, [SceneObject("dynamic", _box(x - 0.4 * s.metre(y), y - 1.0 * s.metre(y), x + 0.4 * s.metre(y), y))]))
    return placed


def _camera_void(street: Street, rng: np.random.Generator) -> list[SceneObject]:
    """Ego vehicle bonnet, rectification border and out-of-roi frame, as in every Cityscapes frame."""
    H, W = street.height, street.width
    bonnet = H * rng.uniform(0.93, 0.95)
    ego = [(0, H), (0, bonnet + 0.04 * H), (W * 0.25, bonnet + 0.01 * H), (W * 0.5, bonnet),
           (W * 0.75, bonnet + 0.01 * H), (W, bonnet + 0.04 * H), (W, H)]
    band = max(1.0, 0.004 * W)  # rectification border: thin strips at the left and right edges
    left, right = _box(0, 0, band, H), _box(W - band, 0, W, H)
    roi = max(1.0, 0.01 * H)  # out of roi: the top rows
    out_of_roi = _box(0, 0, W, roi)
    return [SceneObject("ego vehicle", ego), SceneObject("out of roi", out_of_roi),
            SceneObject("rectification border", left), SceneObject("rectification border", right)]


def make_scene(rng: np.random.Generator, height: int, width: int, guest: str) -> list[SceneObject]:
    """All objects of one scene, clipped to the image, in drawing order (back to front)."""
    street = make_street(rng, height, width)
    objects = _background(street, rng) + _ground(street, rng) + _street_furniture(street, rng)
    for _, group in sorted(_road_users(street, rng, guest), key=lambda item: item[0]):
        objects.extend(group)
    objects.extend(_camera_void(street, rng))
    clipped = []
    for obj in objects:
        polygon = clip_polygon(obj.polygon, width, height)
        if len(polygon) >= 3:
            clipped.append(SceneObject(obj.label, [(int(round(x)), int(round(y))) for x, y in polygon]))
    return clipped
