"""Atomic writers: every output is written to a temporary file or folder beside its target, then
renamed onto it, so a killed or failing stage never leaves a half-written output behind.

Temporary siblings are named `.{target}.tmp-{pid}-XXXXXXXX` (and `.{target}.old-{pid}-XXXXXXXX` for a
folder being replaced); a SIGKILL can leave them behind, so each write first removes its target's stale
ones: those whose process is gone, never a live writer's. They are created with mode 0666 / 0777 so
that the umask, not mkstemp's 0600, decides who can read.

A stage also holds its outputs for its whole run (`hold_outputs`): a lock file beside each, so a
second process writing the same outputs stops at once, and a write probe, so an unwritable output
folder fails before the long work.
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
from typing import Any, Callable, Iterable, Iterator

import numpy as np
from PIL import Image

from citypipe.errors import CitypipeError

try:
    import fcntl
except ImportError:  # Windows: no flock; outputs are not locked there
    fcntl = None  # type: ignore[assignment]

_TEMP_KINDS = ("tmp", "old")


def _temp_name(target: Path, kind: str, suffix: str = "") -> str:
    return f".{target.name}.{kind}-{os.getpid()}-{secrets.token_hex(4)}{suffix}"


def _own_temp_pid(name: str, target: Path, suffix: str) -> int | None | bool:
    """For a name this module gives `target`'s temporaries (never another file's): the writer's pid, or
    None for the older names without one; False for any other name."""
    pattern = rf"\.{re.escape(target.name)}\.(?:{'|'.join(_TEMP_KINDS)})-(?:(\d+)-)?[0-9a-f]{{8}}{re.escape(suffix)}"
    found = re.fullmatch(pattern, name)
    if found is None:
        return False
    return int(found.group(1)) if found.group(1) else None


def _is_alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # left by an interrupted earlier write of this process (one writer per target in a process)
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # exists, owned by someone else
    return True


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def _remove_stale_temps(target: Path, suffix: str = "") -> None:
    """Delete what killed earlier writes of `target` left beside it; a live writer's temporaries stay."""
    with os.scandir(target.parent) as entries:
        owners = {Path(e.path): _own_temp_pid(e.name, target, suffix) for e in entries}
    for path, pid in owners.items():
        if pid is not False and (pid is None or not _is_alive(pid)):
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


_IO_HINTS = {errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is used up",
             errno.EROFS: "the file system is read-only", errno.EACCES: "permission denied",
             errno.EPERM: "permission denied", errno.ENOTDIR: "a part of the path is a file, not a folder",
             errno.EEXIST: "a part of the path is a file, not a folder", errno.EISDIR: "it is a folder"}


def io_error(path: str | os.PathLike, error: OSError, doing: str = "cannot write") -> CitypipeError:
    """One line naming the path and the cause: 'metrics/eval.json: cannot write (the disk is full, ENOSPC)'."""
    code = error.errno
    name = errno.errorcode.get(code, "") if code else ""
    cause = _IO_HINTS.get(code) or error.strerror or type(error).__name__
    return CitypipeError(f"{path}: {doing} ({cause}{', ' + name if name else ''})")


def _is_about(path: Path, target: Path) -> bool:
    """`path` is `target`, a folder on its way, something inside it or one of its temporaries."""
    path, target = Path(os.path.abspath(path)), Path(os.path.abspath(target))
    return (path == target or path in target.parents or target in path.parents
            or path.name.startswith(f".{target.name}.") or any(p.name.startswith(f".{target.name}.") for p in path.parents))


@contextlib.contextmanager
def _named_io_errors(target: Path) -> Iterator[None]:
    """An OSError while making `target` (write() on a full disk carries no file name) as one line naming it;
    one about another file (an input read while the output is being made) names that file instead."""
    try:
        yield
    except OSError as error:
        if error.filename is not None and not _is_about(Path(os.fsdecode(error.filename)), target):
            raise io_error(error.filename, error, "input/output error") from None
        raise io_error(target, error) from None


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path in the target's folder; rename it onto `target` on success."""
    target = Path(target)
    suffix = suffix or target.suffix
    with _named_io_errors(target):
        target.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale_temps(target, suffix)
        tmp_path = _create_temp(target, suffix, _new_file)
    try:
        with _named_io_errors(target):
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
    """Yield a temporary folder beside `target`; it replaces `target` whole on success.

    A symbolic link to a folder is followed: the folder it points to is replaced, the link stays (a
    folder moved to another disk keeps its data there, not replaced by a new one on this disk)."""
    target = Path(target)
    if target.is_symlink():  # data/trainids -> /big/disk/trainids: write there, keep the link
        target = Path(os.path.realpath(target))
    with _named_io_errors(target):
        target.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale_temps(target)
        tmp = _create_temp(target, "", _new_dir)
    try:
        with _named_io_errors(target):
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


def refuse_overwriting(inputs: Iterable[str | os.PathLike], outputs: Iterable[str | os.PathLike]) -> None:
    """Stop before any work when an output would replace an input (the same file, also through a link
    or another spelling of its path): `citypipe infer a.png --output a.png` must not destroy the photo."""
    files = {}
    for path in inputs:
        with contextlib.suppress(OSError):
            info = os.stat(path)
            files[(info.st_dev, info.st_ino)] = path
    for path in outputs:
        try:
            info = os.stat(path)
        except OSError:
            continue  # not there yet: nothing to overwrite
        source = files.get((info.st_dev, info.st_ino))
        if source is not None:
            raise CitypipeError(f"{path}: is the input {source}; refusing to overwrite an input (choose another output)")


_PROBE_BYTES = 1 << 16  # a write that a full disk refuses (a size-0 create can still succeed there)


def probe_writable(target: str | os.PathLike) -> None:
    """Fail now, in one line, when `target` (a file or folder an atomic writer will make) cannot be
    written: its folder is read-only, not ours, full, or under a regular file. A probe file beside
    it is written, synced and removed."""
    target = Path(target)
    if target.is_symlink():
        target = Path(os.path.realpath(target))
    with _named_io_errors(target):
        target.parent.mkdir(parents=True, exist_ok=True)
        probe = _create_temp(target, target.suffix, _new_file)  # a name the next write's stale cleanup knows
        try:
            with open(probe, "wb") as handle:
                handle.write(b"\0" * _PROBE_BYTES)
                handle.flush()
                os.fsync(handle.fileno())
        finally:
            with contextlib.suppress(OSError):
                probe.unlink()


def _lock_holder(path: Path) -> str:
    with contextlib.suppress(OSError, ValueError):
        return f"pid {int(path.read_text().strip())}"
    return "another process"


@contextlib.contextmanager
def _output_lock(target: Path) -> Iterator[None]:
    """flock on `.{target}.lock` beside `target`, held until the block ends; the kernel drops it when the
    process dies however it dies. The last holder removes the file; a waiter that locked a file removed in
    between (its inode no longer at the path) retries on the new one."""
    lock_path = target.parent / f".{target.name}.lock"
    while True:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise CitypipeError(f"{target}: {_lock_holder(lock_path)} is writing this output (a second run in the "
                                "same folders would mix both runs' files); wait for it or stop it") from None
        try:
            same = os.stat(lock_path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            lock_path.unlink()
        os.close(fd)


def _same_or_inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def check_separate(outputs: Iterable[str | os.PathLike], inputs: Iterable[str | os.PathLike] = ()) -> None:
    """Stop before any work when two outputs are one path or one lies inside the other (the second write
    would replace the first, or append a log to a checkpoint), or when an output is an input or a folder
    holding one: an output folder is replaced whole, so `--cache data/citysynth` would delete the dataset.
    Paths are compared with links resolved."""
    named = [(Path(output), Path(os.path.realpath(output))) for output in outputs]
    for index, (name, path) in enumerate(named):
        for other_name, other in named[:index]:
            if _same_or_inside(path, other) or _same_or_inside(other, path):
                relation = "is the same path as" if path == other else "overlaps"
                raise CitypipeError(f"{name}: {relation} the output {other_name}; give each output its own path")
    for source in inputs:
        real = Path(os.path.realpath(source))
        for name, path in named:
            if _same_or_inside(real, path):
                what = "is the input" if real == path else "is a folder holding the input"
                raise CitypipeError(f"{name}: {what} {source}; an output replaces what is there (choose another output)")


@contextlib.contextmanager
def hold_outputs(*outputs: str | os.PathLike, lock: bool = True, inputs: Iterable[str | os.PathLike] = ()) -> Iterator[None]:
    """A stage's claim on its outputs for its whole run: they must be separate paths that replace none of
    `inputs` (check_separate), each must be writable (checked now, before the long work) and, with
    `lock`, no other process may hold it (a second trainer in the same folders fails at once instead of
    writing every DVCLive row twice)."""
    check_separate(outputs, inputs)
    with contextlib.ExitStack() as held:
        for output in outputs:
            target = Path(output)
            if target.is_symlink():
                target = Path(os.path.realpath(target))
            probe_writable(target)
            if lock and fcntl is not None:
                held.enter_context(_output_lock(target))
        yield
