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

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

SCHEME = "bearerAuth"
OPEN_SECURITY: list[dict[str, list[str]]] = [{}, {SCHEME: []}]
KEYED_SECURITY: list[dict[str, list[str]]] = [{SCHEME: []}]
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
    if yaml.safe_load(text).get("security") == requirement:
        return text
    blocks = _SECURITY_BLOCK.findall(text)
    if len(blocks) != 1:
        raise ValueError(f"expected one top-level 'security:' block in the spec, found {len(blocks)}")
    lines = "".join(f"  - {yaml.safe_dump(item, default_flow_style=True).strip()}\n"
                    for item in requirement)
    changed = _SECURITY_BLOCK.sub(lambda _: f"security:\n{lines}", text, count=1)
    if yaml.safe_load(changed) != {**yaml.safe_load(text), "security": requirement}:
        raise ValueError("rewriting the spec's 'security' block changed more than security")
    return changed


def served(path: Path, *, keyed: bool) -> ServedSpec:
    """The contract at ``path`` as a server with (``keyed``) or without keys serves it."""
    text = with_security(path.read_text(encoding="utf-8"), security(keyed))
    document = yaml.safe_load(text)
    as_json = json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    return ServedSpec(document, text.encode("utf-8"), as_json.encode("utf-8"))
