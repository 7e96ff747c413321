"""Checkpoints: model, optimizer, scheduler, grad-scaler, progress, RNG states and params.

Everything is a tensor or a plain Python value, so loading uses weights_only=True and never runs
pickled code. Loading checks the architecture and the number of classes and says what differs.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch

from citypipe.atomic import atomic_path
from citypipe.errors import CitypipeError
from citypipe.models.deeplab import DeepLab, ModelConfig, build_model


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: str | Path, expected: ModelConfig | None = None) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise CitypipeError(f"{path}: checkpoint not found (run the train stage first)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise CitypipeError(f"{path}: cannot load checkpoint ({str(error).splitlines()[0]})") from None
    if not isinstance(state, dict) or "model_config" not in state or "model" not in state:
        raise CitypipeError(f"{path}: not a citypipe checkpoint (no model_config/model entries)")
    if expected is not None:
        check_config(path, state["model_config"], expected)
    return state


def check_config(path: Path, stored: dict[str, Any], expected: ModelConfig) -> None:
    wanted = dataclasses.asdict(expected)
    for key, value in wanted.items():
        if stored.get(key) != value:
            raise CitypipeError(f"{path}: checkpoint has {key}={stored.get(key)!r} but params ask for {key}={value!r}")


def load_model(path: str | Path, expected: ModelConfig | None, device: torch.device,
               channels_last: bool = False) -> DeepLab:
    """The checkpoint's model with its weights, in eval mode on `device`.

    With `expected` (the params' architecture) a checkpoint of another architecture is an error;
    without it, the architecture stored in the checkpoint is built.
    """
    state = load_checkpoint(path, expected)
    model = build_model(ModelConfig(**state["model_config"]))
    model.load_state_dict(state["model"])
    model.to(device).eval()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model
