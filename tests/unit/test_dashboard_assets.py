"""The dashboard ships inside the package and reaches for nothing outside the server: every
file of tunegate/dashboard/ is package data, and none names another host or a CDN.

(tests/unit/test_wheel.py checks a built wheel serves them; tests/api/test_dashboard.py the
headers; tests/e2e/test_dashboard_browser.py watches a real browser's requests.)
"""

from __future__ import annotations

import fnmatch
import re
import tomllib
from pathlib import Path

from tunegate.api.dashboard import ASSETS, MEDIA_TYPES

ROOT = Path(__file__).resolve().parents[2]
# A URL with a host (http://x, https://x, //x in an attribute or url()), or CSS's @import.
OTHER_HOST = re.compile(r"\b(?:https?|wss?):|[\"'(]//|@import")
# The one absolute URL allowed: the SVG namespace's name, an identifier that is never fetched.
SVG_NAMESPACE = "http://www.w3.org/2000/svg"


def _package_data_patterns() -> list[str]:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    return list(pyproject["tool"]["setuptools"]["package-data"]["tunegate"])


def test_every_dashboard_file_is_package_data() -> None:
    files = [path for path in ASSETS.iterdir() if path.is_file()]
    assert {path.name for path in files} >= {"index.html", "main.js", "style.css"}
    patterns = _package_data_patterns()
    for path in files:
        assert path.suffix in MEDIA_TYPES, f"{path.name}: served with no media type"
        relative = path.relative_to(ASSETS.parent).as_posix()
        assert any(fnmatch.fnmatch(relative, pattern) for pattern in patterns), (
            f"{relative} is not in pyproject's package-data: a wheel would lack it")


def test_no_file_names_another_host() -> None:
    for path in ASSETS.iterdir():
        text = path.read_text(encoding="utf-8").replace(SVG_NAMESPACE, "")
        found = OTHER_HOST.search(text)
        assert found is None, f"{path.name}: {text[found.start() - 40:found.end() + 40]!r}"
