"""Atomic writers: every output is written to a temporary file or folder beside its target, then
renamed onto it, so a killed or failing stage never leaves a half-written output behind.

Temporary siblings are named `.{target}.tmp-XXXXXXXX` (and `.{target}.old-XXXXXXXX` for a folder
being replaced); a SIGKILL can leave them behind, so each write first removes its target's stale ones.
They are created with mode 0666 / 0777 so that the umask, not mkstemp's 0600, decides who can read.
"""
from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import json
import math
import os
import re
import secrets
import shutil
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
from PIL import Image

_TEMP_KINDS = ("tmp", "old")


def _temp_name(target: Path, kind: str, suffix: str = "") -> str:
    return f".{target.name}.{kind}-{secrets.token_hex(4)}{suffix}"


def _is_own_temp(name: str, target: Path, suffix: str) -> bool:
    """Only names this module gives `target`'s temporaries, never another file's."""
    pattern = rf"\.{re.escape(target.name)}\.(?:{'|'.join(_TEMP_KINDS)})-[0-9a-f]{{8}}{re.escape(suffix)}"
    return re.fullmatch(pattern, name) is not None


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def _remove_stale_temps(target: Path, suffix: str = "") -> None:
    """Delete what a killed earlier write of `target` left beside it (one writer per target, as under DVC)."""
    with os.scandir(target.parent) as entries:
        stale = [Path(e.path) for e in entries if _is_own_temp(e.name, target, suffix)]
    for path in stale:
        _remove(path)


def _create_temp(target: Path, suffix: str, create: Callable[[Path], None]) -> Path:
    """A new, unused temporary sibling of `target`, made by `create` (which fails if it exists)."""
    for _ in range(100):
        path = target.parent / _temp_name(target, "tmp", suffix)
        try:
            create(path)
            return path
        except FileExistsError:
            continue
    raise FileExistsError(f"{target.parent}: no free temporary name for {target.name}")


def _new_file(path: Path) -> None:
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))  # the umask applies


def _new_dir(path: Path) -> None:
    os.mkdir(path, 0o777)  # the umask applies


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path in the target's folder; rename it onto `target` on success."""
    target = Path(target)
    suffix = suffix or target.suffix
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temps(target, suffix)
    tmp_path = _create_temp(target, suffix, _new_file)
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


_RENAME_EXCHANGE = 2  # linux/fs.h
_AT_FDCWD = -100


@functools.lru_cache(maxsize=1)
def _renameat2() -> Any:
    try:
        return ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):  # not Linux, or a C library without renameat2
        return None


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one step with Linux's renameat2(RENAME_EXCHANGE); False where unsupported."""
    renameat2 = _renameat2()
    if renameat2 is None:
        return False
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP):  # file system or kernel lacks it
        return False
    raise OSError(code, os.strerror(code), str(a), None, str(b))


def _swap_in(new: Path, target: Path) -> None:
    """Put folder `new` at `target` so that the old or the new folder exists at every instant.

    With RENAME_EXCHANGE `target` is never absent; otherwise the old folder is renamed aside first
    (a crash between the two renames leaves both complete, the old one as `.{target}.old-*`).
    """
    if not os.path.lexists(target):
        os.replace(new, target)
        return
    if _exchange(new, target):
        _remove(new)  # now the old folder
        return
    old = target.parent / _temp_name(target, "old")
    try:
        os.replace(target, old)
        os.replace(new, target)
    except BaseException:
        if not os.path.lexists(target) and os.path.lexists(old):
            os.replace(old, target)  # put the old folder back
        raise
    _remove(old)


@contextlib.contextmanager
def atomic_dir(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder beside `target`; it replaces `target` whole on success."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temps(target)
    tmp = _create_temp(target, "", _new_dir)
    try:
        yield tmp
        _swap_in(tmp, target)
    finally:
        if os.path.lexists(tmp):
            _remove(tmp)


def _json_safe(value: Any) -> Any:
    """NaN is not JSON: write it as null (the official evaluator's NaN = "not defined")."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.generic):
        return _json_safe(value.item())
    return value


def write_json(path: str | os.PathLike, data: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(_json_safe(data), indent=2, allow_nan=False) + "\n")


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_png(path: str | os.PathLike, array: np.ndarray) -> None:
    """uint8 (H, W) / (H, W, 3) or uint16 (H, W) arrays to PNG, atomically."""
    if array.dtype == np.uint16:
        image = Image.fromarray(array)  # mode "I;16": a 16-bit PNG
    else:
        image = Image.fromarray(np.ascontiguousarray(array, dtype=np.uint8))
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG")
