"""The contract as served: ``/v1/openapi.yaml`` is openapi.yaml, ``/v1/openapi.json`` the same
document as JSON (``$ref``s kept, not connexion's expanded copy), and ``security`` says what this
server needs: nothing when it is open, the bearer key when it has keys."""

from __future__ import annotations

import difflib
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.api.conftest import ALICE
from tunegate.api.app import SPEC
from tunegate.api.spec import KEYED_SECURITY, OPEN_SECURITY, with_security

SOURCE = SPEC.read_bytes()
DOCUMENT = yaml.safe_load(SOURCE)


def refs(node: Any) -> int:
    if isinstance(node, dict):
        return ("$ref" in node) + sum(refs(value) for value in node.values())
    if isinstance(node, list):
        return sum(refs(value) for value in node)
    return 0


def test_the_open_server_serves_the_file_byte_for_byte(client: Any) -> None:
    answer = client.get("/v1/openapi.yaml")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("application/yaml")
    assert answer.content == SOURCE
    assert yaml.safe_load(answer.content)["security"] == OPEN_SECURITY == [{}, {"bearerAuth": []}]


def test_the_json_is_the_same_document_with_its_refs(client: Any) -> None:
    answer = client.get("/v1/openapi.json")
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/json"
    served = answer.json()
    assert served == DOCUMENT
    assert refs(served) == refs(DOCUMENT) > 100
    assert list(served["components"]["schemas"]) == list(DOCUMENT["components"]["schemas"])
    # connexion's own rendering inlines every $ref: several times the size.
    assert len(answer.content) < 2 * len(json.dumps(DOCUMENT, indent=2))


def test_a_keyed_server_requires_the_key_and_changes_nothing_else(keyed_client: Any) -> None:
    served_yaml = keyed_client.get("/v1/openapi.yaml")
    served_json = keyed_client.get("/v1/openapi.json").json()
    assert served_yaml.status_code == 200
    assert served_json == {**DOCUMENT, "security": KEYED_SECURITY}
    assert yaml.safe_load(served_yaml.content) == served_json
    # Only the lines of the top-level security block differ; comments and layout are kept.
    changed = [line for line in difflib.unified_diff(
        SOURCE.decode().splitlines(), served_yaml.text.splitlines(), lineterm="", n=0)
        if line[:1] in "+-" and not line.startswith(("+++", "---"))]
    assert changed == ["-  - {}", "-  - bearerAuth: []", "+  - {bearerAuth: []}"]


def test_swagger_ui_reads_the_served_json(client: Any) -> None:
    page = client.get("/v1/docs/")
    assert page.status_code == 200
    assert "/v1/openapi.json" in page.text
    assert client.head("/v1/openapi.json").status_code == 200


def test_the_keyed_spec_is_public_and_the_api_still_is_not(keyed_client: Any) -> None:
    assert keyed_client.get("/v1/openapi.json").status_code == 200
    assert keyed_client.get("/v1/models").status_code == 401
    assert keyed_client.get("/v1/models", headers=ALICE.headers).status_code == 200


def test_with_security_rewrites_only_the_block(tmp_path: Path) -> None:
    text = "openapi: 3.0.3\n# a comment\nsecurity:\n  # why\n  - bearerAuth: []\npaths: {}\n"
    assert with_security(text, KEYED_SECURITY) == text  # already says so: the same text
    opened = with_security(text, OPEN_SECURITY)
    assert opened == "openapi: 3.0.3\n# a comment\nsecurity:\n  - {}\n  - {bearerAuth: []}\npaths: {}\n"
    assert yaml.safe_load(opened)["security"] == OPEN_SECURITY
    with pytest.raises(ValueError, match="one top-level 'security:' block"):
        with_security("openapi: 3.0.3\npaths: {}\n", KEYED_SECURITY)
