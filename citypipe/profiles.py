"""Params profiles: a YAML file of params.yaml keys to change (profiles/{name}.yaml), applied to
params.yaml with its comments kept, and validated before anything is written."""
from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import yaml
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedSeq

from citypipe.errors import CitypipeError
from citypipe.params import params_from_dict


def read_profile(path: Path) -> dict[str, dict[str, Any]]:
    """{section: {key: value}} from a profile file; a clear error for a missing or malformed one."""
    if not path.is_file():
        known = sorted(p.stem for p in path.parent.glob("*.yaml")) if path.parent.is_dir() else []
        raise CitypipeError(f"{path}: no such profile (known: {', '.join(known) or 'none'})")
    try:
        profile = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise CitypipeError(f"{path}: not valid YAML ({error})".replace("\n", " ")) from None
    if not isinstance(profile, dict) or not all(isinstance(v, dict) for v in profile.values()):
        raise CitypipeError(f"{path}: expected sections of keys, like params.yaml")
    return profile


def apply_profile(params_text: str, profile: dict[str, dict[str, Any]]) -> tuple[str, list[str]]:
    """params.yaml text with the profile's values set -> (new text, ["train.lr: 0.02 -> 0.01", ...]).

    Keys must already exist in params.yaml; the result must pass params validation.
    """
    round_trip = dvc_style_yaml()
    document = round_trip.load(params_text)
    changes = []
    for section, values in profile.items():
        if section not in document:
            raise CitypipeError(f"profile: unknown section {section!r} (params.yaml has {', '.join(document)})")
        for key, value in values.items():
            if key not in document[section]:
                raise CitypipeError(f"profile: unknown key {section}.{key}")
            old = document[section][key]
            if _plain(old) != value:
                changes.append(f"{section}.{key}: {_plain(old)!r} -> {value!r}")
                document[section][key] = value
    block_style(document)
    buffer = io.StringIO()
    round_trip.dump(document, buffer)
    new_text = buffer.getvalue()
    params_from_dict(yaml.safe_load(new_text))  # a profile that breaks params never gets written
    return new_text, changes


def _plain(value: Any) -> Any:
    """ruamel's commented containers -> plain lists and dicts, for comparing and printing."""
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def dvc_style_yaml() -> YAML:
    """ruamel round-trip YAML set up as DVC writes params.yaml for `dvc exp run -S` (block lists, plain
    quoting): a file in this style keeps every line but the one that `-S` sets. Comments are kept."""
    round_trip = YAML()
    round_trip.default_flow_style = False
    return round_trip


def block_style(value: Any) -> None:
    """Every list in block style (one `- item` per line), as DVC rewrites them."""
    if isinstance(value, dict):
        for item in value.values():
            block_style(item)
    elif isinstance(value, list):
        if isinstance(value, CommentedSeq) and len(value):  # an empty list stays [], as DVC leaves it
            value.fa.set_block_style()
        for item in value:
            block_style(item)
