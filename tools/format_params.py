"""Rewrite params.yaml and profiles/*.yaml in the style DVC writes for `dvc exp run -S` (block lists,
plain quoting), comments kept, so that `-S` changes exactly the line it sets.

    python tools/format_params.py            # rewrite in place
    python tools/format_params.py --check    # exit 1 if a file is not in that style
"""
from __future__ import annotations

import io
import sys
from pathlib import Path

from citypipe.profiles import block_style, dvc_style_yaml

ROOT = Path(__file__).resolve().parents[1]


def formatted(text: str) -> str:
    round_trip = dvc_style_yaml()
    document = round_trip.load(text)
    block_style(document)
    buffer = io.StringIO()
    round_trip.dump(document, buffer)
    return buffer.getvalue()


def main() -> int:
    check = "--check" in sys.argv[1:]
    stale = []
    for path in [ROOT / "params.yaml", *sorted((ROOT / "profiles").glob("*.yaml"))]:
        text = path.read_text()
        new = formatted(text)
        if new != text:
            stale.append(path)
            if not check:
                path.write_text(new)
    for path in stale:
        print(f"{'not in DVC style' if check else 'reformatted'}: {path.relative_to(ROOT)}")
    return 1 if check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
