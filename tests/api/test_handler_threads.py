"""Where handlers run (handlers/__init__.py): JSON reads on the event loop, the rest in threads."""

from __future__ import annotations

import asyncio

import pytest

from tests.test_spec_examples import follow, operations
from tunegate.api.operations import handler


@pytest.mark.parametrize(("method", "path", "operation"),
                         [(method, path, op) for path, method, op, _ in operations()])
def test_only_the_json_reads_are_coroutines(method: str, path: str, operation: dict) -> None:
    # An operation that never succeeds (GET /responses/{id}: nothing is stored) reads nothing.
    success = next((status for status in operation["responses"] if status.startswith("2")), None)
    answers = (follow(operation["responses"][success]).get("content", {})  # 201 for creates
               if success else {})
    json_read = method == "get" and list(answers) == ["application/json"]
    # A coroutine runs on the event loop: a write waiting for the database's lock, an upload or
    # a stream would hold up every other request there.
    assert asyncio.iscoroutinefunction(handler(operation["operationId"])) == json_read, (
        f"{method.upper()} {path}")
