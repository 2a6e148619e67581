"""HTTP handlers bound by ``operationId`` in openapi.yaml. HTTP only: each calls one service
method and returns ``(body, status)``; rules live in ``tunegate.api.service``.

Handlers that only read (the ``GET``s answering JSON) are coroutines: connexion runs them on the
event loop. A plain function goes to a thread of the pool, a hand-off that cost more CPU than
the read itself (~0.2 ms a request) and, under many clients, GIL hand-offs between up to 40
threads. That is safe because their work never waits: store reads are single statements that
take no lock (``tunegate.store.sql``; on PostgreSQL a plain SELECT waits for no row lock
either), the base-model listing reads a local folder. Handlers that write, take an upload or
stream stay plain functions, in the thread pool, where waiting for the database's write lock or
for a model blocks nobody else.
"""

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
