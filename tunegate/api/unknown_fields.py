"""A JSON body's fields the contract does not declare are refused (400), never ignored.

The contract marks each object that takes no other keys with ``additionalProperties: false``.
The first undeclared key met is answered in OpenAI's words ("Unrecognized request argument
supplied: …") with its dotted path as ``param``, and with where it belongs when the body
declares that name elsewhere (a top-level ``n_epochs`` belongs in
``method.supervised.hyperparameters``) or a near name (``hyperparameters.epochs``: did you mean
``n_epochs``?). Found before the schema is checked, so the answer is about the misplaced field
and not about what its absence left behind.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Mapping
from typing import Any

from tunegate.errors import InvalidRequest, clip

# Deeper than any body of the contract; resolved schemas are trees, this is only a net.
MAX_SCHEMA_DEPTH = 12
CLOSENESS = 0.6  # difflib's ratio: 'epochs' ~ 'n_epochs', 'learning_rate' ~ '…_multiplier'


def refuse_unknown_fields(body: Any, schema: Mapping[str, Any]) -> None:
    """Raise ``InvalidRequest`` (``code: unknown_parameter``) for the first key of ``body``
    that ``schema`` does not declare where it allows no others."""
    found = _first_unknown(body, schema, ())
    if found is None:
        return
    where, name = found
    path = ".".join([*where, name])
    hint = _where_it_belongs(name, where, schema)
    raise InvalidRequest(f"Unrecognized request argument supplied: {clip(path)}.{hint}",
                         param=clip(path), code="unknown_parameter")


def _first_unknown(value: Any, schema: Mapping[str, Any],
                   where: tuple[str, ...]) -> tuple[tuple[str, ...], str] | None:
    if not isinstance(value, dict) or len(where) > MAX_SCHEMA_DEPTH:
        return None
    declared = schema.get("properties") or {}
    if schema.get("additionalProperties", True) is False:
        unknown = next((str(key) for key in value if key not in declared), None)
        if unknown is not None:
            return where, unknown
    for key, inner in value.items():
        if key in declared:
            found = _first_unknown(inner, declared[key], (*where, key))
            if found is not None:
                return found
    return None


def _where_it_belongs(name: str, where: tuple[str, ...], root: Mapping[str, Any]) -> str:
    places = _places(name, root)
    if places:
        others = f" (or {', '.join(places[1:])})" if len(places) > 1 else ""
        return f" {name} belongs in {places[0] or 'the top level of the body'}{others}."
    siblings = _object_at(root, where).get("properties") or {}
    near = difflib.get_close_matches(name, list(siblings), n=1, cutoff=CLOSENESS)
    if near:
        return f" Did you mean '{near[0]}'?"
    anywhere = {declared: place for place, declared, _ in _declared(root, ())}
    near = difflib.get_close_matches(name, list(anywhere), n=1, cutoff=CLOSENESS)
    if near:
        return f" Did you mean '{near[0]}' in {anywhere[near[0]] or 'the top level'}?"
    return ""


def _places(name: str, root: Mapping[str, Any]) -> list[str]:
    """Where ``name`` is declared, current places first and deprecated ones only if no other."""
    found = [(place, deprecated) for place, declared, deprecated in _declared(root, ())
             if declared == name]
    current = [place for place, deprecated in found if not deprecated]
    return current or [place for place, _ in found]


def _declared(schema: Mapping[str, Any], where: tuple[str, ...],
              deprecated: bool = False) -> Iterator[tuple[str, str, bool]]:
    """``(place, name, deprecated)`` for every property declared under ``schema``."""
    if len(where) > MAX_SCHEMA_DEPTH:
        return
    for name, inner in (schema.get("properties") or {}).items():
        old = deprecated or (isinstance(inner, Mapping) and bool(inner.get("deprecated")))
        yield ".".join(where), name, old
        if isinstance(inner, Mapping):
            yield from _declared(inner, (*where, name), old)


def _object_at(schema: Mapping[str, Any], where: tuple[str, ...]) -> Mapping[str, Any]:
    for key in where:
        schema = (schema.get("properties") or {}).get(key) or {}
    return schema
