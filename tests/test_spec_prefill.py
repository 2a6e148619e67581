"""Swagger UI's "Try it out" fills each parameter with its example: an id in a parameter must be
one every server has (the embedded base model) or none at all, else the first request a user
sends from the docs page answers 404 (or an empty page, or 400 for an unknown event id).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from tests.test_spec_examples import SPEC, follow
from tunegate.domain.catalog import EMBEDDED_MODEL_ID

# Parameters that take an id, or a filter whose example no fresh server would match.
ID_QUERY_PARAMETERS = {"after", "last_event_id", "Last-Event-ID", "metadata"}
# What a server started with no data has.
EVERY_SERVER_HAS = {EMBEDDED_MODEL_ID}


def parameters() -> Iterator[tuple[str, dict[str, Any]]]:
    for name, parameter in SPEC["components"]["parameters"].items():
        yield f"components.parameters.{name}", parameter
    for path, item in SPEC["paths"].items():
        for method, operation in item.items():
            if isinstance(operation, dict):
                for parameter in operation.get("parameters", []):
                    yield f"{method.upper()} {path}", follow(parameter)


def prefilled(parameter: dict[str, Any]) -> list[Any]:
    """What Swagger UI would put in the parameter's field."""
    values = [parameter["example"]] if "example" in parameter else []
    values += [follow(example).get("value") for example in parameter.get("examples", {}).values()]
    if "example" in parameter.get("schema", {}):
        values.append(parameter["schema"]["example"])
    return values


def test_no_parameter_is_prefilled_with_an_id_a_new_server_lacks() -> None:
    checked = 0
    for where, parameter in parameters():
        if parameter["in"] != "path" and parameter["name"] not in ID_QUERY_PARAMETERS:
            continue
        checked += 1
        unknown = [value for value in prefilled(parameter) if value not in EVERY_SERVER_HAS]
        assert not unknown, f"{where} {parameter['name']}: Swagger UI pre-fills {unknown}"
    assert checked >= 12
