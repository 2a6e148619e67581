"""The contract's ``pattern`` keyword read as JSON Schema means it: ``$`` is the end of the text.

openapi.yaml's patterns are ECMA-262 regular expressions, where ``$`` matches only at the end
of the text. jsonschema runs them with Python's ``re.search``, where ``$`` also matches before a
final newline: ``^[A-Za-z0-9_.-]+$`` accepted the suffix ``"nl\\n"``, which made a model that
was listed but could never be retrieved or deleted, and ``^[^\\u0000-\\u001f]+$`` a MIME type
ending in a line break. Here every ``$`` outside a character class becomes ``\\Z``, so a
pattern anchored at both ends matches the whole value, as ``re.fullmatch`` would.

A schema may add ``x-pattern-hint``: what the pattern asks for in words, said instead of the
regular expression in the 400's message.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import lru_cache
from typing import Any

from connexion.json_schema import Draft4RequestValidator
from jsonschema import Draft4Validator, ValidationError
from jsonschema.validators import extend

HINT = "x-pattern-hint"


@lru_cache(maxsize=256)
def whole_text(pattern: str) -> re.Pattern[str]:
    """``pattern`` compiled with ECMA-262's ``$``: only the very end of the text."""
    out: list[str] = []
    in_class = escaped = False
    for char in pattern:
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif in_class:
            in_class = char != "]"
        elif char == "[":
            in_class = True
        elif char == "$":
            out.append(r"\Z")
            continue
        out.append(char)
    return re.compile("".join(out))


def _pattern(validator: Any, pattern: str, instance: Any,
             schema: dict[str, Any]) -> Iterator[ValidationError]:
    if validator.is_type(instance, "string") and not whole_text(pattern).search(instance):
        rule = schema.get(HINT) or f"does not match {pattern!r}"
        yield ValidationError(f"{instance!r} {rule}")


# jsonschema's Draft 4 validators (connexion's for request bodies), with the pattern above.
RequestValidator = extend(Draft4RequestValidator, {"pattern": _pattern})
ParameterValidator = extend(Draft4Validator, {"pattern": _pattern})
