"""What the contract does not declare is refused, never silently ignored: a query parameter of
any operation, a form field of an upload, half an expiry policy (400, naming it)."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from tests.conftest import chat_lines
from tests.helpers import create_job, upload
from tunegate.api.app import SPEC
from tunegate.api.spec import served

DOCUMENT = served(SPEC, keyed=False).document
OPERATIONS = [(method, path) for path, item in DOCUMENT["paths"].items()
              for method in ("get", "post", "delete") if method in item]


def assert_unknown(response: Any, name: str) -> dict[str, Any]:
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == name
    assert error["code"] == "unknown_parameter"
    assert error["type"] == "invalid_request_error"
    assert f"Unknown parameter: '{name}'." in error["message"]
    return dict(error)


def test_every_operation_refuses_an_undeclared_query_parameter(client: Any) -> None:
    assert len(OPERATIONS) >= 19
    for method, path in OPERATIONS:
        url = "/v1" + re.sub(r"\{[^}]+\}", "x", path) + "?not_in_the_contract=1"
        body = {"json": {}} if method == "post" and path != "/files" else {}
        assert_unknown(client.request(method.upper(), url, **body), "not_in_the_contract")


def test_a_flat_metadata_filter_is_refused_with_the_right_form(client: Any) -> None:
    """``?project=x`` (what a generator ignoring ``style: deepObject`` sends) would otherwise
    answer every job; ``metadata[project]=x`` is the filter."""
    training = upload(client)
    kept = create_job(client, training, metadata={"project": "kept"})
    create_job(client, training, metadata={"project": "other"})
    error = assert_unknown(client.get("/v1/fine_tuning/jobs?project=kept"), "project")
    assert "metadata[project]=<value>" in error["message"]
    assert "'metadata[<key>]'" in error["message"]
    listed = client.get("/v1/fine_tuning/jobs", params={"metadata[project]": "kept"})
    assert [job["id"] for job in listed.json()["data"]] == [kept["id"]]


@pytest.mark.parametrize("key", ["limit[a]", "metadata[a]b", "metadatax[a]"])
def test_brackets_only_belong_to_the_deep_object(client: Any, key: str) -> None:
    assert_unknown(client.get("/v1/fine_tuning/jobs", params={key: "1"}), key)


def post_upload(client: Any, **fields: str) -> Any:
    return client.post("/v1/files", data={"purpose": "fine-tune", **fields},
                       files={"file": ("train.jsonl", chat_lines(12))})


@pytest.mark.parametrize(("sent", "missing"), [
    ({"expires_after[anchor]": "created_at"}, "expires_after[seconds]"),
    ({"expires_after[seconds]": "3600"}, "expires_after[anchor]"),
])
def test_half_an_expiry_policy_is_refused(client: Any, sent: dict[str, str], missing: str) -> None:
    answer = post_upload(client, **sent)
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert error["param"] == missing
    assert "needs both form fields" in error["message"]
    assert client.get("/v1/files").json()["data"] == []  # nothing stored


def test_an_expiry_policy_in_one_part_is_refused(client: Any) -> None:
    """A generator that reads OpenAI's spec (``expires_after`` an object) sends it as one JSON
    part; tunegate reads the SDK's two fields, and says so."""
    policy = json.dumps({"anchor": "created_at", "seconds": 3600})
    error = assert_unknown(post_upload(client, expires_after=policy), "expires_after")
    assert "expires_after[anchor], expires_after[seconds]" in error["message"]
    assert_unknown(post_upload(client, **{"expires_after[anchor][x]": "created_at"}),
                   "expires_after[anchor][x]")
    assert_unknown(post_upload(client, project="x"), "project")


def test_a_whole_expiry_policy_sets_expires_at(client: Any) -> None:
    answer = post_upload(client, **{"expires_after[anchor]": "created_at",
                                    "expires_after[seconds]": "3600"})
    assert answer.status_code == 200, answer.text
    stored = answer.json()
    assert stored["expires_at"] == stored["created_at"] + 3600
