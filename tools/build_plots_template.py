"""Build .dvc/plots_offline.html: DVC's plot page with vega, vega-lite and vega-embed inlined.

`dvc plots show` loads these three scripts from a CDN by default, so its page is blank without
internet. Run once after changing versions (needs npm):

    python tools/build_plots_template.py vega@5.33.1 vega-lite@5.23.0 vega-embed@6.29.0
"""
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

STYLE = """<style>table { border-spacing: 15px; } body { font-family: sans-serif; }
/* image plots: DVC puts one box per revision side by side with white-space: nowrap, so two 1300 px
   panels overflow the page in `dvc plots diff`; let the boxes share the width and the images shrink */
div[id$="_png"] { white-space: normal !important; display: flex; flex-wrap: wrap; justify-content: center; }
div[id$="_png"] > p { flex-basis: 100%; }
div[id$="_png"] > div { flex: 1 1 0; min-width: 0; max-width: 100%; }
div[id$="_png"] img { max-width: 100%; height: auto; }</style>"""
BUILDS = {"vega": "build/vega.min.js", "vega-lite": "build/vega-lite.min.js", "vega-embed": "build/vega-embed.min.js"}


def main(specs: list[str]) -> None:
    scripts = []
    with tempfile.TemporaryDirectory() as tmp:
        for spec in specs:
            name = spec.rsplit("@", 1)[0]
            tgz = subprocess.run(["npm", "pack", spec, "--silent"], cwd=tmp, check=True, capture_output=True,
                                 text=True).stdout.strip().splitlines()[-1]
            with tarfile.open(Path(tmp) / tgz) as archive:
                source = archive.extractfile(f"package/{BUILDS[name]}").read().decode()
            if "</script" in source.lower():
                sys.exit(f"{spec}: its build contains </script and cannot be inlined")
            scripts.append(f"<!-- {spec} (BSD-3-Clause) -->\n<script>{source}</script>")
    page = ("<!DOCTYPE html>\n<html>\n<head>\n<meta charset=\"utf-8\">\n<title>citypipe plots</title>\n"
            + "\n".join(scripts)
            + "\n" + STYLE + "\n</head>\n"
            "<body>\n{plot_divs}\n</body>\n</html>\n")
    target = Path(__file__).resolve().parents[1] / ".dvc" / "plots_offline.html"
    target.write_text(page)
    print(f"wrote {target} ({len(page) // 1024} KiB)")


if __name__ == "__main__":
    main(sys.argv[1:] or ["vega@5.33.1", "vega-lite@5.23.0", "vega-embed@6.29.0"])
