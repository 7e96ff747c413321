"""The visualize stage's pictures, read back as pixels: sizes, what each panel shows, legends, the confusion figure.

Frames are made of large uniform blocks, so the rendered PNG holds their exact colours (nearest-neighbour or
block interiors) and the share of each colour inside a panel is the share of its block in the frame. Expected
colours are computed here from the official class colours (cityscapesscripts' table via citypipe.labels).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from citypipe.labels import NUM_CLASSES, train_id_colors
from citypipe.visualization.figures import confusion_figure
from citypipe.visualization.panels import overlay, overlay_figure, panel_figure

H, W = 32, 64
ROAD, SKY, CAR, SIDEWALK = 0, 10, 13, 1
COLOURS = train_id_colors()  # (256, 3) uint8: trainId -> official colour, 255 -> black
ORANGE, MINT = (200, 100, 50), (20, 220, 120)


def frame() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(H, W, 3) image: left half orange, right half mint; (H, W) label: 4 ignored rows, road, then sky from
    the middle row; prediction: the label with a car in the left quarter below the ignored rows and road on them."""
    image = np.zeros((H, W, 3), np.uint8)
    image[:, : W // 2], image[:, W // 2:] = ORANGE, MINT
    label = np.full((H, W), ROAD, np.uint8)
    label[H // 2:], label[:4] = SKY, 255
    prediction = label.copy()
    prediction[:, : W // 4], prediction[:4] = CAR, ROAD
    return image, label, prediction


def read_rgb(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def mask_of(picture: np.ndarray, colour) -> np.ndarray:
    return (picture == np.asarray(colour, np.uint8)).all(-1)


def bbox(mask: np.ndarray) -> tuple[int, int, int, int]:
    """(top, left, height, width) of the True pixels."""
    ys, xs = np.nonzero(mask)
    return int(ys.min()), int(xs.min()), int(ys.max() - ys.min() + 1), int(xs.max() - xs.min() + 1)


def shares(picture: np.ndarray, colours: dict[str, tuple]) -> dict[str, float]:
    """Each colour's share of all pixels of the given colours."""
    counts = {name: int(mask_of(picture, c).sum()) for name, c in colours.items()}
    total = sum(counts.values())
    assert total > 0
    return {name: n / total for name, n in counts.items()}


def expected_shares(masks: dict[str, np.ndarray]) -> dict[str, float]:
    total = sum(int(m.sum()) for m in masks.values())
    return {name: int(m.sum()) / total for name, m in masks.items()}


def test_overlay_pixels_are_the_blend_of_image_and_class_colour():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    ids = rng.integers(0, NUM_CLASSES, (H, W)).astype(np.uint8)
    ids[0] = 255  # ignored: blended with black
    for alpha in (0.0, 0.3, 0.5, 1.0):
        got = overlay(image, ids, alpha)
        for y, x in [(0, 0), (5, 7), (31, 63), (17, 40)]:
            colour = np.zeros(3) if ids[y, x] == 255 else np.array(COLOURS[ids[y, x]], float)
            want = np.floor(image[y, x] * (1 - alpha) + colour * alpha + 0.5)  # round half up; no exact .5 here
            np.testing.assert_allclose(got[y, x], want, atol=1 if alpha not in (0.0, 1.0) else 0)
        assert got.dtype == np.uint8 and got.shape == (H, W, 3)
    np.testing.assert_array_equal(overlay(image, ids, 0.0), image)
    np.testing.assert_array_equal(overlay(image, ids, 1.0)[1:], COLOURS[ids[1:]])


def test_panel_shows_image_truth_prediction_and_errors_in_four_equal_panels(tmp_path):
    image, label, prediction = frame()
    panel_figure(image, label, prediction, "frankfurt_000000_000019", tmp_path / "panel.png")
    picture = read_rgb(tmp_path / "panel.png")
    height, width = picture.shape[:2]
    assert 0.7 * 1320 <= width <= 1.05 * 1320 and 0.9 * 726 <= height <= 1.05 * 726  # figsize (12, 6.6) at 110 dpi, tight
    legend_top = int(0.9 * height)  # the legend strip is the figure's bottom tenth (subplots_adjust bottom=0.1)
    body = picture[:legend_top]
    mid_y, mid_x = body.shape[0] // 2, width // 2
    quadrants = {"image": body[:mid_y, :mid_x], "truth": body[:mid_y, mid_x:], "prediction": body[mid_y:, :mid_x],
                 "errors": body[mid_y:, mid_x:]}
    ignored, road, sky, car = label == 255, label == ROAD, label == SKY, prediction == CAR
    dim = lambda c: (np.array(c) * 0.35).astype(np.uint8)  # noqa: E731: the error map's dimmed image
    tint = lambda c: (dim(c) * 0.6 + np.array([40, 160, 40]) * 0.4).astype(np.uint8)  # noqa: E731
    right = (prediction == label) & ~ignored
    wrong = (prediction != label) & ~ignored
    left = np.zeros((H, W), bool)
    left[:, : W // 2] = True
    cases = {
        "image": ({"orange": ORANGE, "mint": MINT}, {"orange": left, "mint": ~left}),
        "truth": ({"void": (0, 0, 0), "road": COLOURS[ROAD], "sky": COLOURS[SKY]}, {"void": ignored, "road": road, "sky": sky}),
        "prediction": ({"road": COLOURS[ROAD], "sky": COLOURS[SKY], "car": COLOURS[CAR]},
                       {"road": prediction == ROAD, "sky": prediction == SKY, "car": car}),
        "errors": ({"grey": (128, 128, 128), "red": (230, 30, 30), "right_orange": tint(ORANGE), "right_mint": tint(MINT)},
                   {"grey": ignored, "red": wrong, "right_orange": right & left, "right_mint": right & ~left}),
    }
    sizes = []
    for name, (colours, masks) in cases.items():
        got, want = shares(quadrants[name], colours), expected_shares(masks)
        for key in want:
            assert got[key] == pytest.approx(want[key], abs=0.02), (name, key)
        shown = [key for key in colours if len(set(np.asarray(colours[key]).tolist())) > 1]  # titles: grey levels
        frame_box = bbox(np.logical_or.reduce([mask_of(quadrants[name], colours[key]) for key in shown]))
        _, _, box_h, box_w = bbox(np.logical_or.reduce([masks[key] for key in shown]))  # in frame pixels
        sizes.append(frame_box[2:])
        assert frame_box[3] / frame_box[2] == pytest.approx(box_w / box_h, rel=0.03), name  # the frame's aspect kept
    assert max(s[1] for s in sizes) - min(s[1] for s in sizes) <= 2  # four panels of one size
    assert sizes[0][1] >= 0.35 * width
    legend = picture[legend_top:]
    for train_id in range(NUM_CLASSES):  # every class in the legend
        assert mask_of(legend, COLOURS[train_id]).sum() >= 30, train_id


def test_overlay_figure_is_the_blend_at_a_readable_size_with_a_legend_of_predicted_classes(tmp_path):
    image, _, prediction = frame()
    alpha = 0.4
    overlay_figure(image, prediction, alpha, "frankfurt_000000_000019", tmp_path / "overlay.png")
    picture = read_rgb(tmp_path / "overlay.png")
    blend = lambda c, k: tuple(np.round(np.array(c) * (1 - alpha) + COLOURS[k] * alpha).astype(np.uint8))  # noqa: E731
    left = np.zeros((H, W), bool)
    left[:, : W // 2] = True
    colours, masks = {}, {}
    for side, c, where in (("orange", ORANGE, left), ("mint", MINT, ~left)):
        for k in (ROAD, SKY, CAR):
            if (where & (prediction == k)).any():
                colours[f"{side}/{k}"], masks[f"{side}/{k}"] = blend(c, k), where & (prediction == k)
    got, want = shares(picture, colours), expected_shares(masks)
    for key in want:
        assert got[key] == pytest.approx(want[key], abs=0.02), key
    top, left_x, height, width = bbox(np.logical_or.reduce([mask_of(picture, c) for c in colours.values()]))
    assert width >= 1000  # 10 inches at 110 dpi whatever the frame's 64 pixels
    assert width / height == pytest.approx(W / H, rel=0.02)
    assert picture.shape[1] <= 1100 + 5
    legend = picture[top + height:]
    for k in (ROAD, SKY, CAR):
        assert mask_of(legend, COLOURS[k]).sum() >= 30, k
    assert not mask_of(picture, COLOURS[SIDEWALK]).any()  # a class not predicted is not in the legend


def render_confusion(mat: np.ndarray, path: Path) -> np.ndarray:
    confusion_figure(mat, path)
    return read_rgb(path)


def test_confusion_figure_rows_are_ground_truth_normalised_per_row(tmp_path):
    identity = np.diag(np.arange(1, NUM_CLASSES + 1) * 100)  # rows with other totals: normalised, all 1
    column = np.zeros((NUM_CLASSES, NUM_CLASSES), np.int64)
    column[:, 0] = np.arange(1, NUM_CLASSES + 1) * 7  # every class predicted as road
    a, b = render_confusion(identity, tmp_path / "a.png"), render_confusion(column, tmp_path / "b.png")
    assert a.shape == b.shape
    height, width = a.shape[:2]
    assert 0.85 * 880 <= height <= 1.05 * 880 and 0.85 * 990 <= width <= 1.05 * 990  # figsize (9, 8) at 110 dpi, tight
    darkest = (8, 48, 107)  # Blues at 1.0: every non-empty cell here (rows normalised)
    only_a = mask_of(a, darkest) & ~mask_of(b, darkest)  # cells (i, i), i >= 1; the colour bar cancels out
    only_b = mask_of(b, darkest) & ~mask_of(a, darkest)  # cells (i, 0), i >= 1
    ta, la, ha, wa = bbox(only_a)
    tb, lb, hb, wb = bbox(only_b)
    cell = ha / (NUM_CLASSES - 1)
    assert wa == pytest.approx(ha, rel=0.05)  # square cells on the diagonal
    assert (hb, tb) == (pytest.approx(ha, abs=2), pytest.approx(ta, abs=2))  # the same rows (ground truth)
    assert wb == pytest.approx(cell, rel=0.1) and lb == pytest.approx(la - cell, abs=2)  # one column, left of (1, 1)
    ys, xs = np.nonzero(only_a)
    assert np.abs((xs - la) - (ys - ta)).max() <= cell  # on the main diagonal
