"""connexion request validators with tunegate's fixes.

- JSON: a body that is not UTF-8 is the client's fault (400), not a 500 (connexion #1860), and
  so is one nested deeper than ``nesting.MAX_DEPTH`` (refused before it is parsed); schema
  errors name the offending field in ``param``.
- Messages quote a bad value by its first ``QUOTE_CHARS`` characters only, where jsonschema's
  quote it whole (a 20 MB ``suffix`` would come back as a 20 MB answer).
- Patterns: ``$`` is the end of the value (``tunegate.api.patterns``), not also the place before
  a final newline, in bodies, parameters and forms.
- Parameters: one-line messages that name the parameter, instead of jsonschema's dump; a
  parameter (or form field) given twice is a 400, where connexion would silently keep one value;
  so is a query parameter (or, where the body's schema says ``additionalProperties: false``, a
  form field) the contract does not declare, which connexion would silently ignore: a client
  that sends ``?project=x`` for the filter ``metadata[project]=x`` learns it at once. A JSON
  body's undeclared fields are refused the same way (tunegate.api.unknown_fields).
- Multipart: connexion's validator keeps the whole request in memory to replay it; ours spools
  it to disk while parsing, so a 500 MB upload costs megabytes of RAM, and a malformed
  multipart body is a 400 instead of a 500.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import AsyncGenerator, Iterable, Mapping
from typing import Any

from connexion.datastructures import MediaTypeDict
from connexion.validators import (
    VALIDATOR_MAP,
    JSONRequestBodyValidator,
    MultiPartFormDataValidator,
    ParameterValidator,
)
from jsonschema import Draft4Validator, ValidationError
from starlette.datastructures import Headers, QueryParams, UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.types import Receive, Scope

from tunegate.api.nesting import MAX_DEPTH, too_deep
from tunegate.api.patterns import ParameterValidator as PatternParameterValidator
from tunegate.api.patterns import RequestValidator
from tunegate.api.unknown_fields import refuse_unknown_fields
from tunegate.errors import QUOTE_CHARS, InvalidRequest, clip

SPOOL_IN_MEMORY = 1024 * 1024
REPLAY_CHUNK = 256 * 1024
UTF_8 = ("utf-8", "utf8")
# What a message keeps of jsonschema's text after the quoted value (a rule from the contract,
# or, for additionalProperties, the client's unexpected names).
RULE_CHARS = 3 * QUOTE_CHARS
TOO_DEEP = (f"The request body nests arrays and objects more than {MAX_DEPTH} levels deep; "
            "tunegate reads at most that many.")


def _missing(error: ValidationError) -> str | None:
    """The property a ``required`` error is about (jsonschema only names it in the message)."""
    if error.validator != "required" or not isinstance(error.instance, dict):
        return None
    return next((str(name) for name in error.validator_value if name not in error.instance), None)


def _path(error: ValidationError) -> str | None:
    # Property names are the client's too (a metadata key may be megabytes).
    parts = [clip(str(part)) for part in error.absolute_path]
    missing = _missing(error)
    return ".".join([*parts, missing] if missing else parts) or None


def quoted_message(message: str, instance: Any) -> str:
    """jsonschema's ``message`` about ``instance``, the value in it cut to a short prefix.

    Most messages open with ``repr(instance)`` ("'aaa…' is too long"); the repr is rebuilt
    only for a long message, to find where the value ends and the rule begins.
    """
    if len(message) <= QUOTE_CHARS:
        return message
    shown = repr(instance)
    if message.startswith(shown):
        return clip(shown) + clip(message[len(shown):], RULE_CHARS)
    return clip(message, RULE_CHARS)


def _schema_error(error: ValidationError, prefix: str = "") -> InvalidRequest:
    param = _path(error)
    if _missing(error):
        return InvalidRequest(f"{prefix}Missing required parameter: '{param}'.", param=param,
                              code="missing_required_parameter")
    where = f" for '{param}'" if param else ""
    message = quoted_message(error.message, error.instance)
    return InvalidRequest(f"{prefix}Invalid value{where}: {message}", param=param,
                          code=_schema_code(error))


def _schema_code(error: ValidationError) -> str:
    """OpenAI's codes for a value of the wrong type and for any other value a rule refuses."""
    return "invalid_type" if error.validator == "type" else "invalid_value"


class JSONBodyValidator(JSONRequestBodyValidator):
    @property
    def _validator(self) -> Any:
        return RequestValidator(self._schema, format_checker=Draft4Validator.FORMAT_CHECKER)

    async def _parse(self, stream: AsyncGenerator[bytes, None], scope: Scope) -> Any:
        raw = b"".join([chunk async for chunk in stream])
        try:
            text = raw.decode(self._encoding)
        except (UnicodeDecodeError, LookupError):
            raise InvalidRequest(f"The request body is not valid {self._encoding} text.",
                                 code="invalid_encoding") from None
        if not text:
            return None
        # Before json.loads: it recurses per level (a RecursionError, a 500, near 1,000).
        if too_deep(raw if self._encoding.lower() in UTF_8 else text.encode()):
            raise InvalidRequest(TOO_DEEP, code="invalid_json")
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise InvalidRequest(f"The request body is not valid JSON: {exc}.",
                                 code="invalid_json") from None

    def _validate(self, body: Any) -> dict | None:
        if not self._nullable and body is None:
            raise InvalidRequest("The request body must not be empty.", code="missing_body")
        refuse_unknown_fields(body, self._schema)
        try:
            self._validator.validate(body)
        except ValidationError as exc:
            raise _schema_error(exc) from None
        return None


def _refuse_repeats(keys: Iterable[str], declared: Mapping[str, Any], where: str) -> None:
    """A declared, non-array field given twice is ambiguous (connexion would silently keep one
    of the values, e.g. of two ``metadata[k]`` filters): answer 400 instead."""
    seen: set[str] = set()
    for key in keys:
        name = key if key in declared else key.split("[", 1)[0]  # deepObject: metadata[k]
        if key in seen and name in declared and declared[name].get("type") != "array":
            raise InvalidRequest(f"The {where} '{clip(key)}' is given more than once.",
                                 param=name, code="duplicate_parameter")
        seen.add(key)


def _refuse_deep_keys(keys: Iterable[str]) -> None:
    """connexion turns ``a[b][c]=…`` into nested objects, one level per bracket, and the
    messages about them recurse as deep (a RecursionError near 1,000)."""
    for key in keys:
        if key.count("[") > MAX_DEPTH:
            raise InvalidRequest(f"The query parameter '{clip(key)}' nests more than "
                                 f"{MAX_DEPTH} levels deep.", param=clip(key.split("[", 1)[0]),
                                 code="invalid_value")


def _unknown(name: str, accepted: Iterable[str], hint: str = "") -> InvalidRequest:
    names = ", ".join(f"'{each}'" for each in accepted)
    takes = f" Accepted here: {names}." if names else " This operation takes none."
    return InvalidRequest(f"Unknown parameter: '{clip(name)}'.{takes}{hint}", param=clip(name),
                          code="unknown_parameter")


def _refuse_unknown_query(keys: Iterable[str], query: Iterable[Mapping[str, Any]]) -> None:
    """Every query key names a declared parameter: itself, or ``name[key]`` of a deepObject."""
    params = {param["name"]: param for param in query}
    deep = [name for name, param in params.items() if param.get("style") == "deepObject"]
    for key in keys:
        if key in params or (key.split("[", 1)[0] in deep and key.endswith("]")
                             and "[" in key):
            continue
        accepted = [f"{name}[<key>]" if name in deep else name for name in params]
        hint = "".join(f" A filter on {name} is written {name}[{clip(key)}]=<value>."
                       for name in deep if key and "[" not in key)
        raise _unknown(key, accepted, hint)


class ParamValidator(ParameterValidator):
    def validate(self, scope: Scope) -> None:
        query = self.parameters.get("query", [])
        keys = [key for key, _ in QueryParams(scope.get("query_string", b"")).multi_items()]
        _refuse_unknown_query(keys, query)
        _refuse_deep_keys(keys)
        _refuse_repeats(keys, {param["name"]: param.get("schema", param) for param in query},
                        "query parameter")
        super().validate(scope)

    @staticmethod
    def validate_parameter(parameter_type: str, value: Any, param: dict,
                           param_name: str | None = None) -> str | None:
        schema = param.get("schema", param)
        if value is None:
            if param.get("required"):
                raise InvalidRequest(f"Missing required {parameter_type} parameter "
                                     f"'{param['name']}'.", param=param["name"],
                                     code="missing_required_parameter")
            return None
        if schema.get("nullable") and value in (None, "null"):
            return None
        try:
            _parameter_validator(schema).validate(value)
        except ValidationError as exc:
            message = quoted_message(exc.message, exc.instance)
            raise InvalidRequest(
                f"Invalid {parameter_type} parameter '{param['name']}': {message}.",
                param=param["name"], code=_schema_code(exc),
            ) from None
        return None


# A parameter's validator, made once per schema (the spec's schemas live as long as the app):
# building one costs more than the validation itself, on every request with a query parameter.
_PARAMETER_VALIDATORS: dict[int, tuple[dict, Any]] = {}


def _parameter_validator(schema: dict) -> Any:
    known = _PARAMETER_VALIDATORS.get(id(schema))
    if known is None or known[0] is not schema:  # keeps the schema: its id stays its own
        if len(_PARAMETER_VALIDATORS) > 4096:  # apps built and dropped (tests): start afresh
            _PARAMETER_VALIDATORS.clear()
        known = (schema, PatternParameterValidator(
            schema, format_checker=Draft4Validator.FORMAT_CHECKER))
        _PARAMETER_VALIDATORS[id(schema)] = known
    return known[1]


class StreamingMultipartValidator(MultiPartFormDataValidator):
    """Validates multipart fields while spooling the raw body to a temporary file."""

    async def wrap_receive(self, receive: Receive, *, scope: Scope) -> tuple[Receive, Scope]:
        spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY)  # noqa: SIM115
        try:
            size = await self._validate_while_spooling(receive, scope, spool)
        except BaseException:
            spool.close()
            raise
        spool.seek(0)

        async def replay() -> dict:
            chunk = spool.read(REPLAY_CHUNK)
            more = spool.tell() < size
            if not more:
                spool.close()
            return {"type": "http.request", "body": chunk, "more_body": more}

        return replay, scope

    async def _validate_while_spooling(self, receive: Receive, scope: Scope, spool: Any) -> int:
        async def tee() -> AsyncGenerator[bytes, None]:
            more = True
            while more:
                message = await receive()
                chunk = message.get("body", b"")
                spool.write(chunk)
                more = message.get("more_body", False)
                yield chunk

        try:
            fields = await self._parse(tee(), scope)
        except MultiPartException as exc:
            raise InvalidRequest(f"Malformed multipart/form-data body: {exc.message}",
                                 code="invalid_multipart") from None
        self._validate(fields)
        return int(spool.tell())

    async def _parse(self, stream: AsyncGenerator[bytes, None], scope: Scope) -> dict:
        """The form's fields, with each file part replaced by "" (its schema is a string)."""
        headers = Headers(scope=scope)
        if "boundary=" not in headers.get("content-type", ""):
            raise InvalidRequest("A multipart/form-data body needs a boundary in Content-Type.",
                                 code="invalid_multipart")
        form = await MultiPartParser(headers, stream).parse()
        values: dict[str, list[Any]] = {}
        try:
            for key, value in form.multi_items():
                values.setdefault(key, []).append("" if isinstance(value, UploadFile) else value)
        finally:
            await form.close()
        _refuse_repeats([key for key, items in values.items() for _ in items],
                        self._schema.get("properties", {}), "form field")
        self._refuse_unknown_fields(values)
        files = {key: value[0] if len(value) == 1 else value for key, value in values.items()
                 if "" in value}
        parsed = self._uri_parser.resolve_form(
            {key: value for key, value in values.items() if key not in files})
        return {**parsed, **files}

    def _refuse_unknown_fields(self, fields: Iterable[str]) -> None:
        """A field the schema does not declare, where it allows none (``expires_after`` sent
        as one part, say, instead of ``expires_after[anchor]`` and ``expires_after[seconds]``)."""
        if self._schema.get("additionalProperties", True) is not False:
            return
        declared = list(self._schema.get("properties", {}))
        for name in fields:
            if name in declared:
                continue
            root = name.split("[", 1)[0]
            parts = [each for each in declared if each.startswith(root + "[")]
            hint = (f" '{root}' is sent as the form fields {', '.join(parts)}." if parts else "")
            raise _unknown(name, declared, hint)

    def _validate(self, body: Any) -> dict | None:
        try:
            RequestValidator(self._schema,
                             format_checker=Draft4Validator.FORMAT_CHECKER).validate(body)
        except ValidationError as exc:
            raise _schema_error(exc) from None
        return None


def validator_map() -> dict[str, Any]:
    """connexion's validator map with the three replacements above."""
    body = MediaTypeDict({
        **dict(VALIDATOR_MAP["body"]),
        "*/*json": JSONBodyValidator,
        "multipart/form-data": StreamingMultipartValidator,
    })
    return {"parameter": ParamValidator, "body": body, "response": VALIDATOR_MAP["response"]}
