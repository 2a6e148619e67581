"""The dashboard at ``/dashboard/``: the static files of ``tunegate/dashboard/`` (HTML, CSS,
JavaScript modules, shipped as package data), which call the ``/v1`` API from the browser.

It is not an operation of the contract, so it is not in openapi.yaml nor in handlers/: this
sits in front of connexion like the spec files (tunegate.api.app.SpecFile). The files hold
nothing private, so they need no key (the page asks for one when the API answers 401);
TunegateMiddleware, further out, stamps the dashboard's own Content-Security-Policy
(``self`` only: the page can reach no other host). Only the files found in the folder at start
are served, by exact name: no path from the request ever reaches the file system.
"""

from __future__ import annotations

from pathlib import Path

from starlette.responses import RedirectResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

DASHBOARD_PATH = "/dashboard"
ASSETS = Path(__file__).resolve().parents[1] / "dashboard"
MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
# Revalidate on every load (cheap: a few small files), so an upgraded server's page is seen at
# once; the API's answers stay no-store.
CACHE_CONTROL = "no-cache"


def is_dashboard(path: str) -> bool:
    return path == DASHBOARD_PATH or path.startswith(DASHBOARD_PATH + "/")


def asset_files(folder: Path = ASSETS) -> dict[str, Path]:
    """URL path -> file, for every servable file of ``folder``; ``/dashboard/`` is index.html."""
    files = {f"{DASHBOARD_PATH}/{entry.name}": entry for entry in sorted(folder.iterdir())
             if entry.is_file() and entry.suffix in MEDIA_TYPES}
    files[f"{DASHBOARD_PATH}/"] = folder / "index.html"
    return files


class DashboardFiles:
    """Serves ``GET``/``HEAD`` of the dashboard's files; ``/dashboard`` and ``/`` redirect to
    ``/dashboard/``. Anything else goes on to the app (a 404 or 405 in the error envelope)."""

    REDIRECTED = ("/", DASHBOARD_PATH)

    def __init__(self, app: ASGIApp, *, folder: Path = ASSETS) -> None:
        self.app = app
        self.files = asset_files(folder)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("GET", "HEAD"):
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        if path in self.REDIRECTED:
            await RedirectResponse(f"{DASHBOARD_PATH}/")(scope, receive, send)
            return
        file = self.files.get(path)
        if file is None:
            await self.app(scope, receive, send)
            return
        # Read on each request (a few kB): an edited checkout serves its edits without a restart.
        response = Response(file.read_bytes(), media_type=MEDIA_TYPES[file.suffix],
                            headers={"cache-control": CACHE_CONTROL})
        await response(scope, receive, send)
