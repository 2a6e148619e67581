"""The documentation: a README a newcomer reads to the end, and the reference in docs/, built as
a site with ``mkdocs build --strict`` (mkdocs.yml makes a broken link, a missing anchor and a
page left out of the navigation warnings, and --strict makes each one fail)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
# A page a newcomer reads to the end: what it is, the two commands, a first job, where to read on.
README_MAX_LINES = 150
LINK = re.compile(r"\]\((docs/[^)#\s]+)(?:#([^)\s]+))?\)")


def heading_anchors(page: Path) -> set[str]:
    """The anchors MkDocs (the toc extension's default slugify) gives a page's headings."""
    anchors, fenced = set(), False
    for line in page.read_text().splitlines():
        fenced ^= line.startswith("```")
        if not fenced and (match := re.match(r"#{1,6} (.*)", line)):
            text = re.sub(r"[^\w\s-]", "", match.group(1).replace("`", "")).strip().lower()
            anchors.add(re.sub(r"[-\s]+", "-", text))
    return anchors


def test_the_documentation_site_builds_strictly(tmp_path: Path) -> None:
    built = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT, capture_output=True, text=True, check=False,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert built.returncode == 0, built.stderr[-4000:]
    assert (tmp_path / "site" / "index.html").is_file()


def test_the_readme_is_short_and_starts_with_the_two_commands() -> None:
    text = README.read_text()
    assert len(text.splitlines()) <= README_MAX_LINES
    quick_start = text.split("## Quick start", 1)[1]
    assert quick_start.index("make run") < quick_start.index("make test")


def test_every_link_from_the_readme_into_docs_finds_its_page_and_heading() -> None:
    links = LINK.findall(README.read_text())
    assert links, "the README points into docs/"
    for path, anchor in links:
        page = ROOT / path
        assert page.is_file(), path
        if anchor:
            assert anchor in heading_anchors(page), f"{path}#{anchor}"
