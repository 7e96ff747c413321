"""Params profiles: a YAML file of params.yaml keys to change (profiles/{name}.yaml), applied to
params.yaml with its comments kept, and validated before anything is written."""
from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedSeq

from citypipe.errors import CitypipeError, first_line
from citypipe.params import is_plain_name, params_from_dict, parse_yaml


def check_profile_name(name: str) -> None:
    """NAME becomes profiles/NAME.yaml: a plain name, never a path."""
    if not is_plain_name(name):
        raise CitypipeError(f"profile {name!r}: expected a plain name like cityscapes (letters, digits, '-'), not a path")


def check_data_root(data_root: str, params_file: Path) -> None:
    """--data-root must be a folder with something in it (relative: to the project, where DVC runs the stages)."""
    folder = Path(data_root)
    if not folder.is_absolute():
        folder = params_file.resolve().parent / folder
    if not data_root.strip() or not folder.is_dir():
        raise CitypipeError(f"--data-root {data_root!r}: no such folder (expected the dataset's root, "
                            "with leftImg8bit/ and gtFine/)")
    if not any(folder.iterdir()):
        raise CitypipeError(f"--data-root {data_root}: the folder is empty (expected leftImg8bit/ and gtFine/)")


def _sections(document: Any, path: Path | str, what: str) -> dict[str, dict[str, Any]]:
    if not isinstance(document, dict) or not all(isinstance(v, dict) for v in document.values()):
        raise CitypipeError(f"{path}: expected sections of keys, like params.yaml ({what})")
    return document


def read_profile(path: Path) -> dict[str, dict[str, Any]]:
    """{section: {key: value}} from a profile file; a clear error for a missing or malformed one."""
    if not path.is_file():
        known = sorted(p.stem for p in path.parent.glob("*.yaml") if p.is_file()) if path.parent.is_dir() else []
        raise CitypipeError(f"{path}: no such profile (known: {', '.join(known) or 'none'})")
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as error:
        raise CitypipeError(f"{path}: cannot read profile ({first_line(error)})") from None
    return _sections(parse_yaml(text, path), path, "a profile")


def apply_profile(params_text: str, profile: dict[str, dict[str, Any]],
                  params_name: str | Path = "params.yaml") -> tuple[str, list[str]]:
    """params.yaml text with the profile's values set -> (new text, ["train.lr: 0.02 -> 0.01", ...]).

    Keys must already exist in params.yaml; the result must pass params validation. The text is
    checked first as the stages read it (syntax, duplicate keys, tags), so ruamel never meets a broken file.
    """
    _sections(parse_yaml(params_text, params_name), params_name, "the file to apply the profile to")
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
    try:
        params_from_dict(parse_yaml(new_text, params_name))  # a profile that breaks params never gets written
    except CitypipeError as error:
        raise CitypipeError(f"{params_name} with the profile: {error}") from None
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
