"""HTTP handlers bound by ``operationId`` in openapi.yaml. HTTP only: each calls one service
method and returns ``(body, status)``; rules live in ``tunegate.api.service``."""

from __future__ import annotations

from connexion import context

from tunegate.api.keys import Caller
from tunegate.api.middleware import CALLER_KEY, SERVICE_KEY
from tunegate.api.service import Service


def service() -> Service:
    """The service of the app serving this request (set by TunegateMiddleware)."""
    return context.context[SERVICE_KEY]  # type: ignore[no-any-return]


def caller() -> Caller:
    """Whom the request acts for (its API key's project and organization; set by the middleware)."""
    return context.context[CALLER_KEY]  # type: ignore[no-any-return]


def project() -> str:
    """The project new objects (files, jobs) of this request belong to."""
    return caller().project_id


def visible() -> str | None:
    """The project whose objects this request may read or change; None for an admin key (all)."""
    return caller().visible_project
