"""Output constraints: what ``response_format`` and a forced ``tool_choice`` ask of a generation.

llama.cpp's ``llama-server`` constrains sampling to a JSON schema (``json_schema``, turned into
a grammar inside the server), so the text it returns parses and validates. Its converter quietly
skips the keywords it does not know (``not``, ``multipleOf``, an unanchored ``pattern``...): a
schema using one would give JSON that does not validate. So the schema is checked here against
the keywords the converter enforces, and anything else is refused with a 400 naming the keyword
and where it is, before any token is generated.

A forced tool call is a JSON constraint too: the answer is started with the ``<tool_call>`` tag
the model's tool calls begin with (:mod:`tunegate.chat.tool_calls`), and the rest is constrained
to ``{"name": ..., "arguments": ...}`` with the function's parameters as the arguments' schema.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tunegate.chat.tool_calls import OPEN
from tunegate.errors import InvalidRequest

Json = dict[str, Any]

# Keywords llama.cpp's json-schema-to-grammar enforces (or that only annotate).
_ENFORCED = frozenset({
    "type", "properties", "required", "additionalProperties", "items", "prefixItems",
    "minItems", "maxItems", "enum", "const", "anyOf", "oneOf", "allOf", "$ref", "$defs",
    "definitions", "minLength", "maxLength", "pattern", "format",
})
_ANNOTATIONS = frozenset({
    "title", "description", "default", "examples", "$schema", "$id", "$comment", "deprecated",
    "readOnly", "writeOnly",
})
# Enforced only for integers: on a "number" llama.cpp ignores them.
_INTEGER_BOUNDS = frozenset({"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"})
_FORMATS = frozenset({"date", "time", "date-time", "uuid"})
_SUBSCHEMA_MAPS = ("properties", "$defs", "definitions")
_SUBSCHEMA_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems")
JSON_OBJECT: Json = {"type": "object"}  # response_format json_object: any JSON object


@dataclass(frozen=True)
class Constraint:
    """A generation's answer starts with ``prefix`` (text the model does not generate) and
    continues as JSON valid against ``json_schema``."""

    json_schema: Json
    prefix: str = ""


def check_schema(schema: Any, param: str, path: str = "") -> None:
    """Refuse (400, ``param``) a schema with a keyword llama.cpp cannot enforce."""
    where = path or "the schema's root"
    if isinstance(schema, bool):
        return
    if not isinstance(schema, Mapping):
        raise _refuse(f"{where} is not a JSON schema object", param)
    for key, value in schema.items():
        if key in _ANNOTATIONS:
            continue
        if key in _INTEGER_BOUNDS:
            if schema.get("type") != "integer":
                raise _refuse(f"'{key}' at {where} is only enforced on integers", param)
            continue
        if key not in _ENFORCED:
            raise _refuse(f"the keyword '{key}' at {where} cannot be enforced", param)
        if key == "pattern" and not (str(value).startswith("^") and str(value).endswith("$")):
            raise _refuse(f"'pattern' at {where} must be anchored with ^ and $", param)
        if key == "format" and value not in _FORMATS:
            raise _refuse(f"the format '{value}' at {where} cannot be enforced (supported: "
                          f"{', '.join(sorted(_FORMATS))})", param)
        if key == "$ref" and not str(value).startswith(("#/$defs/", "#/definitions/")):
            raise _refuse(f"'$ref' at {where} must point into the schema's own $defs", param)
        _check_children(key, value, param, path)


def _check_children(key: str, value: Any, param: str, path: str) -> None:
    if key in _SUBSCHEMA_MAPS and isinstance(value, Mapping):
        for name, child in value.items():
            check_schema(child, param, f"{path}/{key}/{name}")
    elif key in _SUBSCHEMA_LISTS and isinstance(value, list):
        for index, child in enumerate(value):
            check_schema(child, param, f"{path}/{key}/{index}")
    elif key in ("items", "additionalProperties") and isinstance(value, Mapping | bool):
        check_schema(value, param, f"{path}/{key}")
    elif key == "items" and isinstance(value, list):
        for index, child in enumerate(value):
            check_schema(child, param, f"{path}/items/{index}")


def _refuse(why: str, param: str) -> InvalidRequest:
    return InvalidRequest(f"Unsupported JSON schema in {param}: {why} by tunegate's "
                          "constrained generation.", param=param, code="unsupported_schema")


def response_constraint(response_format: Any) -> Constraint | None:
    """The constraint ``response_format`` asks for (``None``: free text)."""
    if not isinstance(response_format, Mapping):
        return None
    kind = response_format.get("type")
    if kind in (None, "text"):
        return None
    if kind == "json_object":
        return Constraint(JSON_OBJECT)
    if kind == "json_schema":
        spec = response_format.get("json_schema")
        if not isinstance(spec, Mapping) or not spec.get("name"):
            raise InvalidRequest("response_format json_schema needs a 'json_schema' object with "
                                 "a 'name'.", param="response_format.json_schema",
                                 code="invalid_value")
        schema = spec.get("schema") or JSON_OBJECT
        check_schema(schema, "response_format.json_schema.schema")
        return Constraint(dict(schema))
    raise InvalidRequest(f"Unknown response_format type '{kind}'.", param="response_format.type",
                         code="invalid_value")


def forced_tool_names(choice: Any, tools: list[Json]) -> list[str]:
    """The functions one of which ``choice`` forces the model to call.
    ``choice`` is a ``tool_choice`` (or the older ``function_call``) other than auto/none."""
    offered = [tool["function"]["name"] for tool in tools]
    if choice == "required":
        if not offered:
            raise InvalidRequest("tool_choice 'required' needs at least one tool in 'tools'.",
                                 param="tool_choice", code="invalid_value")
        return offered
    if isinstance(choice, Mapping):
        function = choice.get("function") if "function" in choice else choice
        name = function.get("name") if isinstance(function, Mapping) else None
        if name not in offered:
            raise InvalidRequest(f"tool_choice names the function '{name}', which is not one of "
                                 f"the tools offered ({', '.join(offered) or 'none'}).",
                                 param="tool_choice", code="invalid_value")
        return [str(name)]
    raise InvalidRequest(f"Unknown tool_choice {choice!r}: use 'auto', 'none', 'required' or "
                         "{\"type\": \"function\", \"function\": {\"name\": ...}}.",
                         param="tool_choice", code="invalid_value")


def tool_call_constraint(names: list[str], tools: list[Json]) -> Constraint:
    """A constraint that makes the answer one call of one of ``names``, its arguments valid
    against that function's ``parameters``."""
    calls = []
    for index, tool in enumerate(tools):
        function = tool["function"]
        if function["name"] not in names:
            continue
        parameters = function.get("parameters") or {"type": "object", "properties": {}}
        check_schema(parameters, f"tools.{index}.function.parameters")
        calls.append({"type": "object",
                      "properties": {"name": {"const": function["name"]},
                                     "arguments": parameters},
                      "required": ["name", "arguments"], "additionalProperties": False})
    schema: Json = calls[0] if len(calls) == 1 else {"anyOf": calls}
    return Constraint(_lift_defs(schema, calls), prefix=OPEN + "\n")


def _lift_defs(schema: Json, calls: list[Json]) -> Json:
    """``schema`` with every function's ``$defs`` also at its root: llama.cpp resolves a
    ``$ref`` (``#/$defs/...``) from the root of the whole document."""
    lifted: Json = dict(schema)
    for call in calls:
        parameters = call["properties"]["arguments"]
        for key in ("$defs", "definitions"):
            if parameters.get(key):
                lifted.setdefault(key, {}).update(parameters[key])
    return lifted
