"""Checkpoints: last.pt (model, optimizer, scheduler, grad-scaler, progress, params) and best.pt
(model, its config and params): saved atomically, loaded safely.

Everything is a tensor or a plain Python value, so loading uses weights_only=True and never runs
pickled code. Loading checks the model format, the architecture and the number of classes and says
what differs.
"""
from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Any

import torch

from citypipe.atomic import atomic_path
from citypipe.errors import CitypipeError, first_line
from citypipe.labels import NUM_CLASSES
from citypipe.models.backbone import BACKBONES
from citypipe.models.deeplab import HEAD_BUILDERS, DeepLab, ModelConfig, build_model

# What the weights mean, beyond the names and shapes a state dict shows. 1 (no entry): every 3x3 conv of a
# dilated stage at the full rate; 2: contracted dilation (a dilated stage's first block keeps the previous
# rate) and model_config with head_channels / head_style. Same shapes, other network: never load across.
MODEL_FORMAT = 2


def canonical(value: Any) -> Any:
    """Fresh containers, interned strings: pickle memoises objects by identity, so the same state with
    other sharing (e.g. history rows loaded from a checkpoint beside new ones) would pickle to other bytes."""
    if isinstance(value, dict):
        return {canonical(k): canonical(v) for k, v in value.items()}
    if isinstance(value, list):
        return [canonical(v) for v in value]
    if isinstance(value, tuple):
        return tuple(canonical(v) for v in value)
    if isinstance(value, str):
        return sys.intern(value)
    return value


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Identical states give identical bytes (DVC hashes checkpoints): canonical containers, and a file
    object, because given a path torch.save names the zip's inner folder after the random temporary file."""
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        torch.save(canonical({**state, "model_format": MODEL_FORMAT}), handle)


def load_checkpoint(path: str | Path, expected: ModelConfig | None = None) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise CitypipeError(f"{path}: checkpoint not found (run the train stage first)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise CitypipeError(f"{path}: cannot load checkpoint ({first_line(error)})") from None
    if not isinstance(state, dict) or "model_config" not in state or "model" not in state:
        raise CitypipeError(f"{path}: not a citypipe checkpoint (no model_config/model entries)")
    stored_config(path, state["model_config"])
    check_format(path, state.get("model_format", 1))
    if expected is not None:
        check_config(path, state["model_config"], expected)
    return state


def check_format(path: Path, found: Any) -> None:
    if found == MODEL_FORMAT:
        return
    if isinstance(found, int) and not isinstance(found, bool) and found > MODEL_FORMAT:
        raise CitypipeError(f"{path}: checkpoint of model format {found}, newer than this citypipe's {MODEL_FORMAT} "
                            "(update citypipe to use it)")
    raise CitypipeError(f"{path}: checkpoint of model format {found!r}, before the current {MODEL_FORMAT} (dilated "
                        "stages changed geometry): retrain it, e.g. delete checkpoints/ and run `dvc repro train`")


def check_config(path: Path, stored: dict[str, Any], expected: ModelConfig) -> None:
    wanted = dataclasses.asdict(expected)
    for key, value in wanted.items():
        if stored.get(key) != value:
            raise CitypipeError(f"{path}: checkpoint has {key}={stored.get(key)!r} but params ask for {key}={value!r}")


_CONFIG_VALUES = {"arch": tuple(HEAD_BUILDERS), "backbone": tuple(BACKBONES), "output_stride": (8, 16),
                  "aux_head": (False, True), "num_classes": (NUM_CLASSES,), "head_style": ("torchvision", "mmseg")}


def stored_config(path: Path, stored: Any) -> ModelConfig:
    """The checkpoint's model_config as a ModelConfig, each field checked: a missing, extra or unknown
    value is named in one line (not a TypeError or KeyError from deep inside the model builder)."""
    if not isinstance(stored, dict):
        raise CitypipeError(f"{path}: checkpoint's model_config is {type(stored).__name__}, expected a mapping")
    fields = dataclasses.fields(ModelConfig)
    names = [f.name for f in fields]
    extra = sorted(set(map(str, stored)) - set(names))
    if extra:
        raise CitypipeError(f"{path}: checkpoint's model_config has an unknown key {extra[0]!r} (known: {', '.join(names)})")
    for key, value in stored.items():
        allowed = _CONFIG_VALUES.get(key)
        if allowed is not None and (value not in allowed or type(value) is not type(allowed[0])):
            raise CitypipeError(f"{path}: checkpoint's model_config has {key}={value!r}, expected one of "
                                f"{', '.join(map(repr, allowed))}")
        if allowed is None and (type(value) is not int or value < 1):  # head_channels
            raise CitypipeError(f"{path}: checkpoint's model_config has {key}={value!r}, expected a positive integer")
    missing = [f.name for f in fields if f.name not in stored and f.default is dataclasses.MISSING]
    if missing:
        raise CitypipeError(f"{path}: checkpoint's model_config lacks {missing[0]!r}")
    return ModelConfig(**stored)


def load_weights(path: Path, model: torch.nn.Module, weights: Any) -> None:
    """The checkpoint's weights into `model`; load_state_dict's error lists every key over many
    lines, so name the first missing, unexpected or mis-shaped one instead."""
    if not isinstance(weights, dict):
        raise CitypipeError(f"{path}: checkpoint's model entry is {type(weights).__name__}, expected a state dict")
    own = model.state_dict()
    for key, tensor in weights.items():
        if key not in own:
            raise CitypipeError(f"{path}: unexpected weight {key} "
                                "(not in the model built from the checkpoint's config)")
        shape = tuple(getattr(tensor, "shape", ()))
        if shape != tuple(own[key].shape):
            raise CitypipeError(f"{path}: weight {key} has shape {list(shape)} in the checkpoint, "
                                f"the model expects {list(own[key].shape)}")
    missing = [key for key in own if key not in weights]
    if missing:
        raise CitypipeError(f"{path}: missing weight {missing[0]} ({len(missing)} missing in all)")
    model.load_state_dict(weights)


def load_model(path: str | Path, expected: ModelConfig | None, device: torch.device,
               channels_last: bool = False) -> DeepLab:
    """The checkpoint's model with its weights, in eval mode on `device`.

    With `expected` (the params' architecture) a checkpoint of another architecture is an error;
    without it, the architecture stored in the checkpoint is built.
    """
    return model_from_state(path, load_checkpoint(path, expected), device, channels_last)


def model_from_state(path: str | Path, state: dict[str, Any], device: torch.device,
                     channels_last: bool = False) -> DeepLab:
    """A loaded checkpoint's (`load_checkpoint`) model with its weights, in eval mode on `device`."""
    model = build_model(stored_config(Path(path), state["model_config"]))
    load_weights(Path(path), model, state["model"])
    model.to(device).eval()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model
