"""Check that `dvc plots show` renders in a real browser with no internet: every vega plot draws
coloured marks and every image loads. Exits 1 naming each blank plot.

Headless Chromium (Debian: `apt-get install chromium`) opens a copy of the page with a probe script
that, once the page has loaded, counts each plot canvas's coloured pixels (vega's marks; axes and
text are grey) and checks every <img>. A screenshot of the page is written for people to look at.

    python tools/check_plots_render.py                       # runs `dvc plots show` here first
    python tools/check_plots_render.py --html dvc_plots/index.html --screenshot docs/plots_show.png
"""
from __future__ import annotations

import argparse
import html
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars"]
MIN_COLOURED_PIXELS = 200  # a line or a few bars; an empty frame with axes has none
PAGE_WIDTH = 1400  # the page must fit this window without scrolling sideways

PROBE = """
<script>
window.addEventListener("load", () => setTimeout(() => {
  const coloured = (canvas) => {
    const data = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
    let count = 0;
    for (let i = 0; i < data.length; i += 4) {
      const hi = Math.max(data[i], data[i + 1], data[i + 2]), lo = Math.min(data[i], data[i + 1], data[i + 2]);
      if (data[i + 3] > 128 && hi - lo > 40) count++;
    }
    return count;
  };
  const vega = {};
  for (const id of %IDS%) {
    const canvas = document.getElementById(id)?.querySelector("canvas");
    vega[id] = canvas ? coloured(canvas) : -1;
  }
  const images = [...document.images].map((img) => [img.getAttribute("src"), img.complete && img.naturalWidth > 0]);
  const report = document.createElement("pre");
  report.id = "render-report";
  const width = document.documentElement.scrollWidth;
  report.textContent = JSON.stringify({vega, images, width});
  document.body.appendChild(report);
}, 2000));
</script>
"""


def find_chromium() -> str | None:
    return next((path for name in ("chromium", "chromium-browser", "google-chrome") if (path := shutil.which(name))), None)


def _chromium(chromium: str, profile: Path, *args: str) -> str:
    command = [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--virtual-time-budget=30000", *args]
    return subprocess.run(command, check=True, capture_output=True, text=True, timeout=180).stdout


def check_page(index_html: Path, chromium: str, screenshot: Path | None = None) -> list[str]:
    """Problems found on the page (empty when every plot rendered)."""
    page = index_html.read_text()
    ids = re.findall(r"vegaEmbed\('#([^']+)'", page)
    if not ids and "<img" not in page:
        return [f"{index_html}: no plots on the page"]
    end = page.rfind("</body>")  # the last one: vega-embed's code contains the text "</body>" too
    probe_page = index_html.with_name(".render_probe.html")
    probe_page.write_text(page[:end] + PROBE.replace("%IDS%", json.dumps(ids)) + page[end:])
    try:
        with tempfile.TemporaryDirectory() as profile:
            dom = _chromium(chromium, Path(profile), "--dump-dom", f"--window-size={PAGE_WIDTH},2400",
                            probe_page.resolve().as_uri())
            if screenshot is not None:
                screenshot.parent.mkdir(parents=True, exist_ok=True)
                _chromium(chromium, Path(profile), f"--screenshot={screenshot.resolve()}", "--window-size=1280,2400",
                          index_html.resolve().as_uri())
    finally:
        probe_page.unlink()
    found = re.search(r'<pre id="render-report">(.*?)</pre>', dom, re.S)
    if not found:
        return [f"{index_html}: the page did not finish loading in Chromium"]
    report = json.loads(html.unescape(found.group(1)))
    problems = [f"plot {name!r}: " + ("nothing drawn (vega did not run)" if count < 0 else f"blank ({count} coloured pixels)")
                for name, count in report["vega"].items() if count < MIN_COLOURED_PIXELS]
    problems += [f"image {src}: did not load" for src, loaded in report["images"] if not loaded]
    if report["width"] > PAGE_WIDTH:
        problems.append(f"{index_html}: the page is {report['width']} px wide, wider than a {PAGE_WIDTH} px window")
    if screenshot is not None and _ink_share(screenshot) < 0.01:
        problems.append(f"{screenshot}: the screenshot is blank")
    return problems


def _ink_share(png: Path) -> float:
    pixels = np.asarray(Image.open(png).convert("L"))
    return float((pixels < 200).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--html", type=Path, help="an index.html from `dvc plots show --out`; default: run it")
    parser.add_argument("--screenshot", type=Path)
    args = parser.parse_args()
    chromium = find_chromium()
    if chromium is None:
        sys.exit("error: no Chromium found (Debian: apt-get install chromium)")
    with tempfile.TemporaryDirectory() as tmp:
        index_html = args.html
        if index_html is None:
            subprocess.run(["dvc", "plots", "show", "--out", tmp], check=True, capture_output=True)
            index_html = Path(tmp) / "index.html"
        problems = check_page(index_html, chromium, args.screenshot)
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    if problems:
        sys.exit(1)
    print(f"all plots rendered in {chromium}" + (f"; screenshot: {args.screenshot}" if args.screenshot else ""))


if __name__ == "__main__":
    main()
