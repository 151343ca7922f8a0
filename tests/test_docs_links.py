"""The documents point only into the repository: every relative link in README.md and docs/*.md
resolves to a file of the repository, no link names an absolute file path, and every backticked
`*.md` path names a document that exists here."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from support.supervised import APP_DIR

DOCUMENTS = [APP_DIR / "README.md", *sorted((APP_DIR / "docs").glob("*.md"))]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
MD_PATH = re.compile(r"`([^`\s.*][^`\s*]*\.md)`")  # a named file, not `.md` or `*.md`


def _inside(path: Path) -> bool:
    return path.resolve().is_relative_to(APP_DIR.resolve())


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: str(p.relative_to(APP_DIR)))
def test_links_stay_inside_the_repository(document: Path) -> None:
    problems = []
    text = document.read_text(encoding="utf-8")
    for target in LINK.findall(text):
        if re.match(r"[a-z]+:", target) and not target.startswith("file:"):
            continue  # a URL (http, https, mailto)
        path = target.split("#", 1)[0]
        if target.startswith(("/", "file:", "~")):
            problems.append(f"{target}: an absolute path")
        elif path and not (_inside(document.parent / path) and (document.parent / path).exists()):
            problems.append(f"{target}: not a file of the repository")
    for named in MD_PATH.findall(text):
        candidates = [document.parent / named, APP_DIR / named]
        if named.startswith(("/", "~")) or not any(c.exists() and _inside(c) for c in candidates):
            problems.append(f"`{named}`: not a document of the repository")
    assert problems == [], f"{document.name}: {problems}"
