"""The dashboard's files as the app serves them: from the package folder, without a key, with
their own Content-Security-Policy (this server only, no inline code), nothing else reachable.

The page itself runs in a real browser in tests/e2e/test_dashboard_browser.py.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.api.conftest import ALICE
from tunegate.api.dashboard import ASSETS, MEDIA_TYPES

ASSET_NAMES = sorted(path.name for path in ASSETS.iterdir() if path.suffix in MEDIA_TYPES)
# What index.html and the modules load: src/href attributes and `import … from "…"`.
REFERENCE = re.compile(r'(?:src|href)="([^"#]+)"|(?:from|import)\s+"([^"]+)"')


def test_the_page_and_every_asset_are_served_without_a_key(keyed_client: Any) -> None:
    page = keyed_client.get("/dashboard/")
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert page.content == (ASSETS / "index.html").read_bytes()
    for name in ASSET_NAMES:
        answer = keyed_client.get(f"/dashboard/{name}")
        assert answer.status_code == 200, name
        assert answer.content == (ASSETS / name).read_bytes(), name
        assert answer.headers["content-type"].split(";")[0] == (
            MEDIA_TYPES[(ASSETS / name).suffix].split(";")[0]), name
        assert answer.headers["cache-control"] == "no-cache", name
    # The API behind it still wants the key.
    assert keyed_client.get("/v1/fine_tuning/jobs").status_code == 401
    assert keyed_client.get("/v1/fine_tuning/jobs", headers=ALICE.headers).status_code == 200


def test_every_file_the_page_loads_is_served(client: Any) -> None:
    """Each src/href of the page and each module import names a file the server has."""
    for name in ASSET_NAMES:
        if not name.endswith((".html", ".js")):
            continue
        for match in REFERENCE.finditer((ASSETS / name).read_text(encoding="utf-8")):
            target = match.group(1) or match.group(2)
            if target.startswith("/v1/"):
                continue  # the API docs link
            assert not target.startswith(("http:", "https:", "//")), (name, target)
            answer = client.get(f"/dashboard/{target.removeprefix('./')}")
            assert answer.status_code == 200, (name, target)


def test_the_dashboard_policy_allows_this_server_only(client: Any) -> None:
    policy = client.get("/dashboard/").headers["content-security-policy"]
    directives = dict(part.strip().split(" ", 1) for part in policy.split(";"))
    assert directives["default-src"] == "'none'"
    for name in ("script-src", "style-src", "img-src", "connect-src"):
        assert directives[name] == "'self'", name  # no other host, no inline code
    assert directives["frame-ancestors"] == "'none'"
    answer = client.get("/dashboard/main.js")
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert answer.headers["x-frame-options"] == "DENY"
    # The API keeps its own, stricter policy.
    assert client.get("/v1/models").headers["content-security-policy"].startswith(
        "default-src 'none'; frame-ancestors")


@pytest.mark.parametrize("path", ["/", "/dashboard"])
def test_the_root_and_the_bare_path_lead_to_the_dashboard(client: Any, path: str) -> None:
    answer = client.get(path, follow_redirects=False)
    assert answer.status_code == 307
    assert answer.headers["location"] == "/dashboard/"


@pytest.mark.parametrize("path", ["/dashboard/nope.js", "/dashboard/../openapi.yaml",
                                  "/dashboard/%2e%2e/app.py", "/dashboard/sub/index.html"])
def test_only_the_shipped_files_are_served(client: Any, path: str) -> None:
    answer = client.get(path)
    assert answer.status_code == 404
    assert answer.json()["error"]["type"] == "invalid_request_error"


def test_writing_to_the_dashboard_is_refused(client: Any) -> None:
    assert client.post("/dashboard/", content=b"x").status_code in (404, 405)
