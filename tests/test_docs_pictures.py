"""Every picture in docs/ is one that tools/docs_pictures.py regenerates from the current pipeline, and each
of them exists."""
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tools"))
import docs_pictures  # noqa: E402


def test_every_docs_picture_has_a_recipe_and_every_recipe_a_picture():
    assert docs_pictures.unmade() == []
    assert sorted(p.name for p in (REPO / "docs").glob("*.png")) == sorted(docs_pictures.RECIPES)


def test_a_picture_without_a_recipe_is_named(tmp_path):
    (tmp_path / "old_screenshot.png").write_bytes(b"")
    (tmp_path / "panel_example.png").write_bytes(b"")
    assert docs_pictures.unmade(tmp_path) == ["old_screenshot.png"]
