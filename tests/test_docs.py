"""The README and docs/*.md point only at things that exist: every relative link or picture names a file
of the repository, and every #anchor names a heading of the document it points into (GitHub's ids)."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

FENCE = re.compile(r"^(```|~~~).*?^\1\s*$", re.MULTILINE | re.DOTALL)
INLINE_CODE = re.compile(r"(`+)(?:(?!\1).)+?\1", re.DOTALL)
COMMENT = re.compile(r"<!--.*?-->", re.DOTALL)
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HTML_SOURCE = re.compile(r"<(?:img|a)\b[^>]*?\b(?:src|href)=\"([^\"]+)\"", re.IGNORECASE)
EXTERNAL = re.compile(r"^(?:[a-z][a-z0-9+.-]*:|//)", re.IGNORECASE)  # http:, https:, mailto:, ...


def prose(text: str) -> str:
    """The text without code blocks, inline code and comments, where `[x](y)` is not a link."""
    return INLINE_CODE.sub("", FENCE.sub("", COMMENT.sub("", text)))


def targets(text: str) -> list[str]:
    body = prose(text)
    return LINK.findall(body) + HTML_SOURCE.findall(body)


def heading_ids(text: str) -> set[str]:
    """GitHub's ids of a document's headings: lower case, punctuation but '-' and '_' dropped, spaces to
    '-', repeats numbered -1, -2, ..."""
    ids: set[str] = set()
    for line in FENCE.sub("", text).splitlines():
        match = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not match:
            continue
        title = re.sub(r"<[^>]+>", "", match.group(1)).lower()
        slug = re.sub(r"[^\w\- ]", "", title).replace(" ", "-")
        unique, n = slug, 0
        while unique in ids:
            n += 1
            unique = f"{slug}-{n}"
        ids.add(unique)
    return ids


def test_the_link_finder_finds_links_and_pictures_but_not_code():
    text = ("See [the guide](docs/A.md#set-up) and ![a picture](docs/p.png \"title\"), [web](https://x.org),\n"
            "<img src=\"docs/q.png\"> and `[not](a/link.md)`.\n```\n[nor](this.md)\n```\n<!-- [nor](that.md) -->\n")
    assert targets(text) == ["docs/A.md#set-up", "docs/p.png", "https://x.org", "docs/q.png"]
    assert heading_ids("# citypipe\n## Set-up: two commands\n## What `dvc repro` makes\n## Set-up: two commands\n") == {
        "citypipe", "set-up-two-commands", "what-dvc-repro-makes", "set-up-two-commands-1"}


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_and_picture_exists(document):
    assert DOCUMENTS[0].is_file() and len(DOCUMENTS) > 1  # the README and at least one document in docs/
    missing = []
    for target in targets(document.read_text()):
        if EXTERNAL.match(target):
            continue
        path_part, _, anchor = target.partition("#")
        path = (document.parent / path_part).resolve() if path_part else document
        if not path.exists() or ROOT not in (path, *path.parents):
            missing.append(f"{target}: no such file in the repository")
        elif anchor and path.suffix == ".md" and anchor not in heading_ids(path.read_text()):
            missing.append(f"{target}: {path.relative_to(ROOT)} has no heading with id '{anchor}'")
    assert missing == [], f"{document.relative_to(ROOT)}: " + "; ".join(missing)
