"""Regenerate every picture in docs/ from the current pipeline's outputs (run after `dvc repro`):

    python tools/docs_pictures.py            # all of them
    python tools/docs_pictures.py --check    # exit 1 naming each docs/ picture no recipe here makes

docs/panel_example.png and docs/overlay_example.png are visualize's first val frame; docs/class_shares.png is
drawn from CitySynth's labels beside the real Cityscapes shares (docs/reference/); docs/plots_show.png is
`dvc plots show` rendered by headless Chromium (skipped, and said so, without one).
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
SAMPLES = REPO / "plots" / "samples"


def _first_sample(kind: str) -> Path:
    """visualize's first val frame (not a worst-frame panel): the same frame for panel and overlay."""
    files = sorted(p for p in SAMPLES.glob(f"*_{kind}.png") if not p.name.startswith("worst"))
    if not files:
        sys.exit(f"error: {SAMPLES}: no *_{kind}.png (run `dvc repro visualize` first)")
    return files[0]


def panel_example(target: Path) -> None:
    shutil.copyfile(_first_sample("panel"), target)


def overlay_example(target: Path) -> None:
    shutil.copyfile(_first_sample("overlay"), target)


def class_shares(target: Path) -> None:
    sys.path.insert(0, str(REPO / "tools"))
    import class_share_figure

    class_share_figure.main(str(REPO / "data" / "citysynth"), str(DOCS / "reference" / "cityscapes_pixel_share.csv"),
                            str(target))


def plots_show(target: Path) -> None:
    sys.path.insert(0, str(REPO / "tools"))
    import check_plots_render

    if check_plots_render.find_chromium() is None:
        print(f"skipped {target.relative_to(REPO)}: no Chromium (Debian: apt-get install chromium)")
        return
    subprocess.run([sys.executable, str(REPO / "tools" / "check_plots_render.py"), "--screenshot", str(target)],
                   cwd=REPO, check=True)


RECIPES = {"panel_example.png": panel_example, "overlay_example.png": overlay_example,
           "class_shares.png": class_shares, "plots_show.png": plots_show}


def unmade(folder: Path = DOCS) -> list[str]:
    """Pictures in docs/ that no recipe here regenerates (they would go stale)."""
    return sorted(p.name for p in folder.glob("*.png") if p.name not in RECIPES)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check that every docs/ picture has a recipe")
    args = parser.parse_args()
    stale = unmade()
    if stale:
        sys.exit(f"error: docs/{', docs/'.join(stale)}: no recipe in tools/docs_pictures.py makes it")
    if args.check:
        return
    for name, recipe in RECIPES.items():
        recipe(DOCS / name)
        print(f"wrote docs/{name}")


if __name__ == "__main__":
    main()
