"""`citypipe infer`'s prediction options change what it writes, and each one is honoured as `predict` means it.

The model is the session's small trained DeepLabV3+ (conftest `trained_checkpoint`); on a 64x128 CitySynth
frame every option below changes some pixel of its prediction (asserted against `predict` itself, so the
test shows the options are different, not only that infer's files are), and infer's mask must be exactly
`predict`'s answer for the matching InferenceConfig.
"""
from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from citypipe.cli import main
from citypipe.data import layout
from citypipe.labels import NUM_CLASSES, train_id_colors
from citypipe.models.checkpoint import load_model
from citypipe.prediction.inference import InferenceConfig, predict

ALPHA = 0.4
# option list -> the InferenceConfig fields it should produce on a 64x128 image (baseline: whole, at the size the
# checkpoint was validated at: the fixture's train.val_size, 64x128)
CASES = {
    "whole": ([], {}),
    "slide": (["--mode", "slide", "--crop-size", "32", "64", "--stride", "16", "32"],
              {"mode": "slide", "crop_size": (32, 64), "stride": (16, 32)}),
    "flip": (["--flip"], {"flip": True}),
    "scales": (["--scales", "0.5,1.0"], {"scales": (0.5, 1.0)}),
    "size": (["--size", "32", "64"], {"size": (32, 64)}),
}


def inference_config(**fields) -> InferenceConfig:
    """InferenceConfig by keyword."""
    return InferenceConfig(**fields)


def config_for(changes: dict) -> InferenceConfig:
    fields = {"mode": "whole", "size": (64, 128), "crop_size": (64, 128), "stride": (64, 128), "flip": False,
              "scales": (1.0,)}
    return inference_config(**(fields | changes))


@pytest.fixture(scope="module")
def frame(synth_root) -> tuple:
    path = layout.find_samples(synth_root, "val")[0].image
    picture = np.asarray(Image.open(path).convert("RGB"))  # (64, 128, 3) uint8
    assert picture.shape == (64, 128, 3)
    return path, picture


@pytest.fixture(scope="module")
def infer_outputs(frame, trained_checkpoint, tmp_path_factory) -> dict[str, tuple[bytes, np.ndarray]]:
    """{case: (overlay PNG bytes, trainIds mask)} written by `citypipe infer`."""
    path, _ = frame
    out = tmp_path_factory.mktemp("infer_options")
    results = {}
    for name, (options, _) in CASES.items():
        result = CliRunner().invoke(main, ["infer", str(path), "--checkpoint", str(trained_checkpoint), "--output",
                                           str(out / f"{name}.png"), "--mask", "trainids", "--device", "cpu",
                                           "--alpha", str(ALPHA), *options])
        assert result.exit_code == 0, result.output
        results[name] = ((out / f"{name}.png").read_bytes(), np.asarray(Image.open(out / f"{name}_trainIds.png")))
    return results


@pytest.mark.parametrize("name", [n for n in CASES if n != "whole"])
def test_each_option_changes_the_overlay_figure_and_the_mask(name, infer_outputs):
    overlay_bytes, mask = infer_outputs[name]
    base_bytes, base_mask = infer_outputs["whole"]
    assert overlay_bytes != base_bytes
    assert (mask != base_mask).any()


@pytest.mark.parametrize("name", list(CASES))
def test_infer_writes_what_predict_computes_for_the_option(name, frame, trained_checkpoint, infer_outputs):
    _, picture = frame
    model = load_model(trained_checkpoint, None, torch.device("cpu"))
    images = torch.from_numpy(picture.copy()).permute(2, 0, 1)[None]  # (1, 3, 64, 128) uint8
    want = predict(model, images, config_for(CASES[name][1]), NUM_CLASSES)[0].numpy()
    if name != "whole":  # the option makes a difference to the model's answer, not only to infer's files
        baseline = predict(model, images, config_for({}), NUM_CLASSES)[0].numpy()
        assert (want != baseline).any()
    _, mask = infer_outputs[name]
    np.testing.assert_array_equal(mask, want)



def test_the_overlay_figure_is_the_blend_of_image_and_prediction(frame, infer_outputs):
    """The overlay is visualize's figure (title, legend); its picture, scaled by matplotlib, keeps the
    blend's colours: every predicted class colour mixed at alpha appears in it."""
    _, picture = frame
    overlay_bytes, mask = infer_outputs["whole"]
    overlay = np.asarray(Image.open(io.BytesIO(overlay_bytes)).convert("RGB")).reshape(-1, 3)
    blend = np.round(picture * (1 - ALPHA) + train_id_colors()[mask] * ALPHA).astype(np.uint8).reshape(-1, 3)
    shown = {tuple(c) for c in overlay}
    common = [tuple(c) for c in np.unique(blend, axis=0)]
    assert sum(c in shown for c in common) >= 0.5 * len(common)  # nearest-neighbour scaling keeps the pixels' colours
