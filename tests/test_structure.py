"""The code's shape, checked: dvc.yaml's deps cover what each stage really imports, and imports
between the package's rooms only run downward.

A stage whose deps miss a module it imports would not rerun when that module changes, leaving
stale outputs that `dvc repro` calls up to date.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]

# Floors of the package, lowest first: a room may import only from rooms on lower floors.
FLOORS = {
    "errors": 0,
    "params": 1, "labels": 1, "atomic": 1, "parallel": 1, "cpu_determinism": 1, "corruptions": 1, "launch": 1,
    "distributed": 1,
    "data": 2,
    "synth": 3, "prepare": 3, "models": 3, "runtime": 3,
    "prediction": 4, "deploy": 4,
    "evaluation": 5, "visualization": 5, "submission": 5,
    "training": 6, "robustness": 6,
    "command_line": 7, "profiles": 7, "compare": 7,
    "infer": 6,
    "cli": 8,
}


def module_file(module: str) -> Path | None:
    """'citypipe.data.layout' -> citypipe/data/layout.py (or the package's __init__.py); None if no such file."""
    base = ROOT.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imported_files(source: Path) -> set[Path]:
    """Project files that `source` imports anywhere in its body (top level or inside functions)."""
    found = set()
    for node in ast.walk(ast.parse(source.read_text())):
        if isinstance(node, ast.Import):
            modules, maybe_modules = [alias.name for alias in node.names], []
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from m import x`: x is a submodule of m, or just a name defined in m
            modules, maybe_modules = [node.module], [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in modules + maybe_modules:
            if name.split(".")[0] != "citypipe":
                continue
            path = module_file(name)
            assert path is not None or name in maybe_modules, f"{source}: imports {name}, which has no file"
            if path is not None:
                found.add(path)
    return found - {source}


def import_closure(script: Path) -> set[Path]:
    todo, seen = [script], set()
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        todo.extend(imported_files(current))
        for parent in current.relative_to(ROOT).parents:  # importing a.b.c runs a/__init__.py and a/b/__init__.py
            init = ROOT / parent / "__init__.py"
            if parent != Path(".") and init.is_file():
                todo.append(init)
    return seen


def stages() -> dict[str, dict]:
    return yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


def covered(path: Path, deps: list[str]) -> bool:
    relative = path.relative_to(ROOT)
    return any(relative == Path(dep) or Path(dep) in relative.parents for dep in deps)


def is_docstring_only(path: Path) -> bool:
    body = ast.parse(path.read_text()).body
    return len(body) == 1 and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)


@pytest.mark.parametrize("stage", sorted(stages()))
def test_stage_deps_cover_every_imported_project_file(stage):
    spec = stages()[stage]
    script = ROOT / spec["cmd"].split()[1]
    deps = [d for d in spec["deps"] if isinstance(d, str)]
    closure = import_closure(script)
    # a docstring-only package __init__.py cannot change what a stage computes, so deps may leave it out
    missing = sorted(str(p.relative_to(ROOT)) for p in closure
                     if not covered(p, deps) and not (p.name == "__init__.py" and is_docstring_only(p)))
    assert not missing, f"dvc.yaml stage {stage!r} imports files missing from its deps: {missing}"


@pytest.mark.parametrize("stage", sorted(set(stages()) - {"train"}))
def test_only_the_train_stage_imports_training_code(stage):
    closure = import_closure(ROOT / stages()[stage]["cmd"].split()[1])
    assert not [p for p in closure if "training" in p.relative_to(ROOT).parts]


def room(path: Path) -> str:
    parts = path.relative_to(ROOT / "citypipe").with_suffix("").parts
    return parts[0]


def test_imports_between_rooms_only_run_downward():
    upward = []
    for source in sorted((ROOT / "citypipe").rglob("*.py")):
        if source.name == "__init__.py" and source.parent == ROOT / "citypipe":
            continue
        for target in imported_files(source) - {ROOT / "citypipe" / "__init__.py"}:
            if room(target) != room(source) and FLOORS[room(target)] >= FLOORS[room(source)]:
                upward.append(f"{source.relative_to(ROOT)} -> {target.relative_to(ROOT)}")
    assert not upward, "imports that run up or sideways: " + "; ".join(upward)


def test_every_room_has_a_floor():
    rooms = {room(p) for p in (ROOT / "citypipe").rglob("*.py") if p != ROOT / "citypipe" / "__init__.py"}
    assert rooms <= set(FLOORS), f"rooms without a floor in FLOORS: {sorted(rooms - set(FLOORS))}"


def test_the_closure_finder_sees_function_level_imports(tmp_path):
    """A self-check: the stage-deps test would miss a lazily imported module if this failed."""
    train_closure = import_closure(ROOT / "stages" / "train.py")
    assert ROOT / "citypipe" / "training" / "loop.py" in train_closure
    assert ROOT / "citypipe" / "params.py" in train_closure
