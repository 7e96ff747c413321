"""Atomic writers: umask modes, crashes in the middle of a folder swap, stale temporaries, kill -9."""
from __future__ import annotations

import errno
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


# --- two writers, locks, links, I/O faults ----------------------------------------------------------------------

SLEEPER = [sys.executable, "-c", "import time; time.sleep(60)"]


def test_a_live_writers_temporaries_are_kept_and_dead_ones_removed(tmp_path):
    """Two writers of one output must not delete each other's live temporary files."""
    sleeper = subprocess.Popen(SLEEPER)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    try:
        live_file, live_dir = f".best.pt.tmp-{sleeper.pid}-0123abcd.pt", f".checkpoints.tmp-{sleeper.pid}-89abcdef"
        dead_file, dead_dir = f".best.pt.tmp-{dead.pid}-0123abcd.pt", f".checkpoints.old-{dead.pid}-89abcdef"
        for name in (live_file, dead_file):
            (tmp_path / name).write_text("x")
        for name in (live_dir, dead_dir):
            (tmp_path / name).mkdir()
        atomic.write_text(tmp_path / "best.pt", "new")
        _write_version(tmp_path / "checkpoints", 1)
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live_file, live_dir, "best.pt", "checkpoints"])
    finally:
        sleeper.kill()
        sleeper.wait()
    _write_version(tmp_path / "checkpoints", 2)  # its writer is gone now: the next write cleans up
    atomic.write_text(tmp_path / "best.pt", "newer")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pt", "checkpoints"]


@pytest.mark.parametrize("link_kind", ["absolute", "relative"])
def test_a_symlinked_output_folder_is_followed_not_replaced(tmp_path, link_kind):
    """data/trainids -> /big/disk/trainids: the new version goes to the big disk and the link stays."""
    big = tmp_path / "big" / "trainids"
    _write_version(big, 1)
    link = tmp_path / "data" / "trainids"
    link.parent.mkdir()
    link.symlink_to(big if link_kind == "absolute" else Path("..") / "big" / "trainids")
    _write_version(link, 2)
    assert link.is_symlink() and _versions(big) == {"v2"} and _versions(link) == {"v2"}
    assert _siblings(big) == [] and sorted(p.name for p in link.parent.iterdir()) == ["trainids"]


def test_an_output_that_is_an_input_is_refused(tmp_path):
    photo = tmp_path / "photo.png"
    photo.write_bytes(b"photo")
    (tmp_path / "link.png").symlink_to(photo)
    os.link(photo, tmp_path / "hard.png")
    (tmp_path / "sub").mkdir()
    for output in (photo, tmp_path / "link.png", tmp_path / "hard.png", tmp_path / "sub" / ".." / "photo.png"):
        with pytest.raises(atomic.CitypipeError, match=r"is the input .*photo.png; refusing to overwrite an input"):
            atomic.refuse_overwriting([photo], [tmp_path / "other.png", output])
    atomic.refuse_overwriting([photo], [tmp_path / "other.png", tmp_path / "sub"])  # new or other files: fine
    assert photo.read_bytes() == b"photo"


def _raising(code: int):
    def fail(*args, **kwargs):
        raise OSError(code, os.strerror(code))

    return fail


WRITERS = {"probe": lambda target: atomic.probe_writable(target),
           "json": lambda target: atomic.write_json(target, {"miou": 0.5}),
           "folder": lambda target: _write_version(target, 1)}


@pytest.mark.parametrize("code, cause", [(errno.ENOSPC, "the disk is full, ENOSPC"),
                                         (errno.EROFS, "the file system is read-only, EROFS"),
                                         (errno.EACCES, "permission denied, EACCES"),
                                         (errno.EDQUOT, "the disk quota is used up, EDQUOT")])
@pytest.mark.parametrize("writer, call", [("probe", "fsync"), ("probe", "open"), ("json", "open"), ("json", "replace"),
                                          ("folder", "mkdir"), ("folder", "replace")])
def test_io_faults_are_one_line_naming_the_output(tmp_path, monkeypatch, code, cause, writer, call):
    """The stage-start probe and the writers: the path and the cause, no traceback, no temporary left."""
    target = tmp_path / "metrics" / "eval"
    target.parent.mkdir()
    monkeypatch.setattr(os, call, _raising(code))
    with pytest.raises(atomic.CitypipeError) as error:
        WRITERS[writer](target)
    monkeypatch.undo()
    assert str(error.value) == f"{target}: cannot write ({cause})"
    assert list(target.parent.iterdir()) == []


def test_an_output_under_a_regular_file_is_refused_before_the_work(tmp_path):
    (tmp_path / "plots").write_text("a file where a folder belongs")
    for target in (tmp_path / "plots" / "eval", tmp_path / "plots" / "eval" / "class_iou.csv"):
        with pytest.raises(atomic.CitypipeError, match=r"plots/eval.*: cannot write \(a part of the path is a file"):
            atomic.probe_writable(target)
        with pytest.raises(atomic.CitypipeError, match="a part of the path is a file"):
            atomic.write_text(target, "x")


HOLDER = """
import sys, time
from citypipe import atomic
with atomic.hold_outputs(sys.argv[1], sys.argv[2]):
    print("held", flush=True)
    time.sleep(60)
"""


def _holder(*outputs: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen([sys.executable, "-c", HOLDER, *map(str, outputs)], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    assert process.stdout.readline() == "held\n", process.stderr.read()
    return process


def test_a_second_process_cannot_hold_the_same_outputs(tmp_path):
    """A second trainer in the same folders stops at once, naming the first one's pid."""
    checkpoints, live = tmp_path / "checkpoints", tmp_path / "dvclive"
    first = _holder(checkpoints, live)
    try:
        for output in (checkpoints, live):
            with pytest.raises(atomic.CitypipeError, match=rf"{output.name}: pid {first.pid} is writing this output"):
                with atomic.hold_outputs(tmp_path / "other", output):
                    pass
        assert not (tmp_path / ".other.lock").exists()  # what it had taken is given back
        with atomic.hold_outputs(tmp_path / "other"):  # other outputs are free
            pass
    finally:
        first.kill()
        first.wait()
    with atomic.hold_outputs(checkpoints, live):  # the kernel dropped a killed holder's lock
        assert (tmp_path / ".checkpoints.lock").read_text() == f"{os.getpid()}\n"
    assert list(tmp_path.iterdir()) == []  # the last holder removes its lock files


def test_the_same_process_cannot_hold_an_output_twice(tmp_path):
    with atomic.hold_outputs(tmp_path / "out"):
        with pytest.raises(atomic.CitypipeError, match="is writing this output"):
            with atomic.hold_outputs(tmp_path / "out"):
                pass
    assert list(tmp_path.iterdir()) == []


def test_a_stage_refuses_outputs_another_process_holds(tmp_path, synth_root):
    params = tmp_path / "params.yaml"
    params.write_text((REPO / "params.yaml").read_text().replace("root: data/citysynth", f"root: {synth_root}"))
    holder = _holder(tmp_path / "out" / "cache", tmp_path / "out" / "t.csv")
    try:
        done = subprocess.run([sys.executable, str(REPO / "stages" / "prepare_labels.py"), "--params", str(params),
                               "--data-root", str(synth_root), "--cache", str(tmp_path / "out" / "cache"), "--class-table", str(tmp_path / "out" / "t.csv"),
                               "--class-weights", str(tmp_path / "out" / "c.json"),
                               "--sample-weights", str(tmp_path / "out" / "s.json")],
                              env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=120)
    finally:
        holder.kill()
        holder.wait()
    assert done.returncode == 1 and done.stderr.strip().splitlines() == [
        f"error: {tmp_path / 'out' / 'cache'}: pid {holder.pid} is writing this output (a second run in the same "
        "folders would mix both runs' files); wait for it or stop it"], done.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [".cache.lock", ".t.csv.lock"]  # the killed holder's


ORPHAN = """
import os, subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "from citypipe.command_line import die_with_parent; "
                          "die_with_parent(); import time; print('ready', flush=True); time.sleep(60)"],
                         stdout=subprocess.PIPE, text=True)
assert child.stdout.readline() == "ready\\n"
print(child.pid, flush=True)
time.sleep(60)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux only")
def test_a_stage_dies_with_its_parent():
    """`dvc repro` killed: its stage must not go on as an orphan writing into the next run's outputs."""
    parent = subprocess.Popen([sys.executable, "-c", ORPHAN], env={**os.environ, "PYTHONPATH": str(REPO)},
                              stdout=subprocess.PIPE, text=True)
    child = int(parent.stdout.readline())
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    for _ in range(600):  # the kernel signals the child when its parent exits; wait for that, not for a time
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            break
        if Path(f"/proc/{child}/stat").read_text().split(") ")[1].startswith("Z"):
            break  # dead, waiting for init to reap it
        time.sleep(0.05)
    else:
        os.kill(child, signal.SIGKILL)
        pytest.fail("the child outlived its parent")


def test_an_input_missing_inside_a_writers_block_is_named_not_the_output(tmp_path):
    with pytest.raises(atomic.CitypipeError, match=r"missing.png: input/output error \(No such file or directory"):
        with atomic_dir(tmp_path / "out"):
            open(tmp_path / "missing.png")
    with pytest.raises(atomic.CitypipeError, match=r"out: cannot write \(No such file or directory"):
        with atomic_dir(tmp_path / "out") as tmp:
            open(tmp / "no-such-folder" / "x.png", "w")
    assert list(tmp_path.iterdir()) == []
