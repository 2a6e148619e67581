"""The contract as served: openapi.yaml itself, and the same document as JSON.

``/v1/openapi.yaml`` is the file's own text (comments, ``$ref``s, key order) and
``/v1/openapi.json`` the same document as JSON, ``$ref``s kept: what a client generator or an
outside schemathesis run should read, where connexion would serve its own ``$ref``-expanded copy
(7 times the size, one anonymous schema per use).

One thing depends on the server: whether it needs a key. The file's top-level ``security`` is
the open server's (``[{}, {bearerAuth: []}]``: no credentials, or a bearer key, which an open
server ignores); a server with keys serves ``[{bearerAuth: []}]``, the key required. Only those
lines of the text are rewritten, so the open variant is the file byte for byte and the keyed one
differs from it in those lines alone.
"""

from __future__ import annotations

import copy
import functools
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

SCHEME = "bearerAuth"
OPEN_SECURITY: list[dict[str, list[str]]] = [{}, {SCHEME: []}]
KEYED_SECURITY: list[dict[str, list[str]]] = [{SCHEME: []}]
# libyaml's loader where PyYAML was built with it: the spec is parsed at every app start, and
# the pure-Python loader takes seconds on it (most of a test run's in-process app starts).
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
# The top-level `security:` key and the indented lines under it (its items, their comments).
_SECURITY_BLOCK = re.compile(r"^security:[^\n]*\n(?:[ \t]+[^\n]*\n)*", re.MULTILINE)


@dataclass(frozen=True)
class ServedSpec:
    document: dict[str, Any]
    yaml: bytes
    json: bytes


def security(keyed: bool) -> list[dict[str, list[str]]]:
    """The top-level security requirement a server with (or without) keys serves."""
    return KEYED_SECURITY if keyed else OPEN_SECURITY


def with_security(text: str, requirement: list[dict[str, list[str]]]) -> str:
    """``text`` (an OpenAPI document in YAML) with its top-level ``security`` set to
    ``requirement``, every other byte unchanged; the text itself when it already says so."""
    if load_yaml(text).get("security") == requirement:
        return text
    blocks = _SECURITY_BLOCK.findall(text)
    if len(blocks) != 1:
        raise ValueError(f"expected one top-level 'security:' block in the spec, found {len(blocks)}")
    lines = "".join(f"  - {yaml.safe_dump(item, default_flow_style=True).strip()}\n"
                    for item in requirement)
    changed = _SECURITY_BLOCK.sub(lambda _: f"security:\n{lines}", text, count=1)
    if load_yaml(changed) != {**load_yaml(text), "security": requirement}:
        raise ValueError("rewriting the spec's 'security' block changed more than security")
    return changed


def load_yaml(text: str) -> Any:
    """``yaml.safe_load``, through libyaml where it is there (the same safe subset)."""
    return yaml.load(text, Loader=_LOADER)  # noqa: S506 - a safe loader, C or Python


def served(path: Path, *, keyed: bool) -> ServedSpec:
    """The contract at ``path`` as a server with (``keyed``) or without keys serves it; read
    once per process (and again when the file changes)."""
    return _served(path, path.stat().st_mtime_ns, keyed)


def document(path: Path) -> dict[str, Any]:
    """The contract at ``path`` as the file says it, a copy of its own (connexion changes the
    document it is given), parsed once per process."""
    return copy.deepcopy(_parsed(path, path.stat().st_mtime_ns))


@functools.lru_cache(maxsize=4)
def _parsed(path: Path, _mtime_ns: int) -> dict[str, Any]:
    parsed: dict[str, Any] = load_yaml(path.read_text(encoding="utf-8"))
    return parsed


@functools.lru_cache(maxsize=4)
def _served(path: Path, _mtime_ns: int, keyed: bool) -> ServedSpec:
    text = with_security(path.read_text(encoding="utf-8"), security(keyed))
    parsed = load_yaml(text)
    as_json = json.dumps(parsed, indent=2, ensure_ascii=False) + "\n"
    return ServedSpec(parsed, text.encode("utf-8"), as_json.encode("utf-8"))
