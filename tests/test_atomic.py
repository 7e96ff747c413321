"""Atomic writers: umask modes, crashes in the middle of a folder swap, stale temporaries, kill -9."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from citypipe import atomic
from citypipe.atomic import atomic_dir, write_text

REPO = Path(__file__).resolve().parents[1]
FILES = 20


def _write_version(target: Path, version: int) -> None:
    with atomic_dir(target) as tmp:
        for k in range(FILES):
            (tmp / f"{k:02d}.txt").write_text(f"v{version}")


def _versions(folder: Path) -> set[str]:
    """The versions a folder's files hold; exactly one (and FILES files) when it is complete."""
    files = sorted(folder.iterdir())
    assert len(files) == FILES, f"{folder}: {len(files)} of {FILES} files"
    return {f.read_text() for f in files}


def _siblings(target: Path) -> list[str]:
    return sorted(p.name for p in target.parent.iterdir() if p.name != target.name)


@pytest.fixture
def umask():
    def set_umask(mask: int) -> None:
        os.umask(mask)

    old = os.umask(0o022)
    yield set_umask
    os.umask(old)


@pytest.mark.parametrize("mask, file_mode, dir_mode", [(0o022, 0o644, 0o755), (0o027, 0o640, 0o750),
                                                       (0o002, 0o664, 0o775)],
                         ids=["umask022", "umask027", "umask002"])
def test_outputs_get_the_modes_the_umask_gives(tmp_path, umask, mask, file_mode, dir_mode):
    umask(mask)
    write_text(tmp_path / "a.txt", "x")
    _write_version(tmp_path / "folder", 1)
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == file_mode
    assert (tmp_path / "folder").stat().st_mode & 0o777 == dir_mode


def _has_exchange(tmp_path: Path) -> bool:
    a, b = tmp_path / "probe_a", tmp_path / "probe_b"
    a.mkdir()
    b.mkdir()
    (a / "in_a").touch()
    swapped = atomic._exchange(a, b)
    assert not swapped or ((b / "in_a").exists() and not (a / "in_a").exists())
    shutil.rmtree(a)
    shutil.rmtree(b)
    return swapped


def test_rename_exchange_swaps_two_folders_on_linux(tmp_path):
    if not sys.platform.startswith("linux"):
        pytest.skip("renameat2 is Linux only")
    assert _has_exchange(tmp_path)


def _fail_on_call(n: int, real, error: BaseException):
    """`real`, except that its n-th call raises `error` (a crash or Ctrl-C at that point)."""
    calls = []

    def fake(*args, **kwargs):
        calls.append(args)
        if len(calls) == n:
            raise error
        return real(*args, **kwargs)

    return fake


@pytest.mark.parametrize("exchange, module, name, nth, survivor", [
    (False, os, "replace", 1, "v1"),  # renaming the old folder aside fails
    (False, os, "replace", 2, "v1"),  # renaming the new folder in fails: the old one is put back
    (False, shutil, "rmtree", 1, "v2"),  # Ctrl-C while deleting the old folder: the new one is in place
    (True, atomic, "_exchange", 1, "v1"),  # the exchange itself fails
    (True, shutil, "rmtree", 1, "v2"),
])
def test_a_crash_in_the_middle_of_a_swap_leaves_a_complete_folder(tmp_path, monkeypatch, exchange, module, name, nth,
                                                                  survivor):
    target = tmp_path / "cache"
    _write_version(target, 1)
    if not exchange:
        monkeypatch.setattr(atomic, "_exchange", lambda a, b: False)
    elif not _has_exchange(tmp_path):
        pytest.skip("no renameat2(RENAME_EXCHANGE) here")
    monkeypatch.setattr(module, name, _fail_on_call(nth, getattr(module, name), KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        _write_version(target, 2)
    monkeypatch.undo()
    assert _versions(target) == {survivor}
    _write_version(target, 3)  # the next write cleans up whatever the crash left beside the target
    assert _versions(target) == {"v3"} and _siblings(target) == []


def test_stale_temporaries_of_the_target_only_are_removed(tmp_path):
    stale = [".best.pt.tmp-0123abcd.pt", ".checkpoints.tmp-89abcdef", ".checkpoints.old-00000000"]
    kept = [".other.pt.tmp-0123abcd.pt", ".best.pt.keep", ".best.pt.tmp-0123abcd.pt.tmp-01234567.pt", "notes.txt"]
    for name in stale + kept:
        (tmp_path / name).mkdir() if "checkpoints" in name else (tmp_path / name).write_text("x")
    (tmp_path / ".checkpoints.tmp-89abcdef" / "half.pt").write_text("x")
    atomic.write_text(tmp_path / "best.pt", "new")
    _write_version(tmp_path / "checkpoints", 1)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(kept + ["best.pt", "checkpoints"])


WRITER = """
import sys
from pathlib import Path
sys.path.insert(0, {tests!r})
from citypipe import atomic
from test_atomic import _write_version
if sys.argv[2] == "rename":
    atomic._exchange = lambda a, b: False
root = Path(sys.argv[1])
version = 0
while True:
    version += 1
    _write_version(root / "folder", version)
    atomic.write_text(root / "file.txt", f"v{{version}}\\n" * 20000)
    print(version, flush=True)
"""


def _kill_writer_after(root: Path, mode: str, delay: float) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen([sys.executable, "-c", WRITER.format(tests=str(REPO / "tests")), str(root), mode],
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert process.stdout.readline(), process.stderr.read().decode()  # one full round written
    time.sleep(delay)
    process.send_signal(signal.SIGKILL)
    process.wait()


@pytest.mark.parametrize("mode", ["exchange", "rename"])
def test_kill_9_during_writes_leaves_old_or_new_content_only(tmp_path, mode):
    target, file = tmp_path / "folder", tmp_path / "file.txt"
    for delay in (0.0, 0.013, 0.031, 0.057, 0.09):
        _kill_writer_after(tmp_path, mode, delay)
        if mode == "rename" and not target.exists():  # killed between the two renames: the old one is aside
            [aside] = tmp_path.glob(".folder.old-*")
            assert len(_versions(aside)) == 1
        else:
            assert len(_versions(target)) == 1
        lines = file.read_text().splitlines()
        assert len(lines) == 20000 and len(set(lines)) == 1
    _write_version(target, 99)
    write_text(file, "done")
    assert _versions(target) == {"v99"} and _siblings(target) == ["file.txt"]
