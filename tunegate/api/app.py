"""The application factory: openapi.yaml bound to ``handlers/`` by connexion, plus our middleware.

``create_app(settings)`` is what ``tunegate serve`` runs and what every test builds on.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import connexion
from connexion.middleware import ConnexionMiddleware, MiddlewarePosition
from connexion.middleware.security import SecurityMiddleware
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from tunegate.api import errors as api_errors
from tunegate.api import spec
from tunegate.api.dashboard import DashboardFiles
from tunegate.api.keys import Caller, KeyRing
from tunegate.api.middleware import RequestIdInside, TunegateMiddleware
from tunegate.api.operations import resolver
from tunegate.api.rate_limit import RateLimiter
from tunegate.api.service import Service
from tunegate.api.spec import ServedSpec, served
from tunegate.api.validators import validator_map
from tunegate.domain import data_folder
from tunegate.domain.files import FileStorage
from tunegate.settings import Settings
from tunegate.store import Store, open_store

# The contract lives at the repository's top level; tunegate/openapi.yaml links to it, and
# setuptools copies the linked file into the wheel, so an installed package finds it here.
SPEC = Path(__file__).resolve().parents[1] / "openapi.yaml"
API_BASE = "/v1"
# The spec declares the bearer scheme (for clients, Swagger UI's "Authorize" and schemathesis),
# required or not as this server's keys make it (tunegate.api.spec); keys are checked by
# TunegateMiddleware, in one place, before routing and with OpenAI's error envelope.
# connexion's own security layer would check them a second time, differently.
MIDDLEWARES = [middleware for middleware in ConnexionMiddleware.default_middlewares
               if middleware is not SecurityMiddleware]


def build_service(settings: Settings, store: Store | None = None) -> Service:
    """The service over the configured store and data folder (migrating the store first)."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    settings.base_models_dir.mkdir(parents=True, exist_ok=True)
    store = store or open_store(settings.sqlalchemy_url)
    data_folder.claim(settings.data_dir, store.identity())
    return Service(settings, store, FileStorage(settings.files_dir))


def create_app(settings: Settings, *, service: Service | None = None,
               keys: KeyRing | None = None, rate: RateLimiter | None = None,
               validate_responses: bool = False) -> connexion.AsyncApp:
    """A ready ASGI app. ``validate_responses`` makes every response prove itself (tests).

    ``keys`` defaults to the settings' keys (``serve`` passes the ring it already read) and
    ``rate`` to ``settings.rate_limit`` per key on the wall clock (tests pass their own clock).
    """
    service = service or build_service(settings)
    keys = keys or KeyRing.from_settings(settings)
    contract = served(SPEC, keyed=keys.enabled)
    app = connexion.AsyncApp(__name__, specification_dir=str(SPEC.parent),
                             swagger_ui_options=None, lifespan=_stops_models(service),
                             middlewares=list(MIDDLEWARES))  # connexion adds ours to the list
    app.add_api(
        # The parsed document, not the file's name: connexion would parse it again (and render
        # it as a Jinja template first, which a spec whose examples show {{…}} must not be).
        spec.document(SPEC),
        resolver=resolver(),
        validate_responses=validate_responses,
        validator_map=validator_map(),
        swagger_ui_options=connexion.options.SwaggerUIOptions(swagger_ui_path="/docs"),
    )
    api_errors.install(app, contract.document["paths"], API_BASE)
    app.add_middleware(TunegateMiddleware, position=MiddlewarePosition.BEFORE_EXCEPTION,
                       service=service, keys=keys,
                       rate=rate or RateLimiter(settings.rate_limit),
                       open_caller=Caller(settings.project_id, settings.organization_id),
                       max_body_bytes=settings.max_upload_bytes,
                       fine_tuning=settings.fine_tuning,
                       upload_room=service.storage.free_bytes)
    app.add_middleware(RequestIdInside, position=MiddlewarePosition.BEFORE_CONTEXT)
    app.add_middleware(SpecFile, position=MiddlewarePosition.BEFORE_SWAGGER, spec=contract)
    app.add_middleware(DashboardFiles, position=MiddlewarePosition.BEFORE_SWAGGER)
    app.add_url_rule("/docs", "docs_redirect", _docs_redirect)
    app.state_service = service  # type: ignore[attr-defined]  # for tests and the CLI
    return app


def _stops_models(service: Service) -> Callable[[Any], AbstractAsyncContextManager[None]]:
    """The app's lifespan: when the server shuts down, its model processes and its event
    poller stop with it."""

    @asynccontextmanager
    async def lifespan(_: Any) -> AsyncIterator[None]:
        try:
            yield
        finally:
            service.inference.close()
            service.upstream.close()
            await service.live_events.close()

    return lifespan


def _docs_redirect(request: Request) -> Response:
    return RedirectResponse(f"{API_BASE}/docs/")


class SpecFile:
    """``GET /v1/openapi.yaml`` answers openapi.yaml itself (comments, ``$ref``s) and
    ``GET /v1/openapi.json`` the same document as JSON, ``$ref``s kept, each with this server's
    ``security`` (tunegate.api.spec).

    connexion's Swagger UI middleware owns both paths and would answer its own re-serialized,
    ``$ref``-resolved rendering (7 times the size) before any route of the app is reached, so
    this sits in front of it; Swagger UI's page reads the JSON served here. Keys and security
    headers still apply: TunegateMiddleware is further out.
    """

    PATHS = {f"{API_BASE}/openapi.yaml": "application/yaml",
             f"{API_BASE}/openapi.json": "application/json"}

    def __init__(self, app: ASGIApp, *, spec: ServedSpec) -> None:
        self.app = app
        self.bodies = {f"{API_BASE}/openapi.yaml": spec.yaml, f"{API_BASE}/openapi.json": spec.json}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (scope["type"] == "http" and scope["path"] in self.PATHS
                and scope["method"] in ("GET", "HEAD")):
            path = scope["path"]
            await Response(self.bodies[path], media_type=self.PATHS[path])(scope, receive, send)
            return
        await self.app(scope, receive, send)
