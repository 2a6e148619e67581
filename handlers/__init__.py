"""HTTP handlers bound by ``operationId`` in openapi.yaml. HTTP only: each calls one service
method and returns ``(body, status)``; rules live in ``tunegate.service``."""

from __future__ import annotations

from connexion import context

from tunegate.middleware import SERVICE_KEY
from tunegate.service import Service


def service() -> Service:
    """The service of the app serving this request (set by TunegateMiddleware)."""
    return context.context[SERVICE_KEY]  # type: ignore[no-any-return]


def project() -> str:
    """The project the request acts for (one project until API keys arrive)."""
    return service().settings.project_id
