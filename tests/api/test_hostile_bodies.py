"""Bodies built to hurt (issue 13): deep nesting and huge values are 400s with small answers,
never 500s or answers that echo megabytes, and the server keeps serving after each.

``expect_error`` checks the envelope and then that ``GET /v1/models`` still answers 200.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import chat_lines
from tests.helpers import expect_error, post_file, post_job, upload
from tunegate.api.nesting import MAX_DEPTH
from tunegate.domain.catalog import EMBEDDED_MODEL_ID

# Comfortably more than an error message needs; a quoted value used to make it megabytes.
SMALL_ANSWER = 2048
BIG = 20 * 1024 * 1024
JSON_ROUTES = ["/v1/fine_tuning/jobs", "/v1/chat/completions", "/v1/completions",
               "/v1/responses"]


def post_json(client: Any, path: str, raw: bytes) -> Any:
    return client.post(path, content=raw, headers={"content-type": "application/json"})


def brackets(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def small_error(client: Any, response: Any, status: int, **expected: Any) -> dict[str, Any]:
    assert len(response.content) < SMALL_ANSWER, response.content[:300]
    return expect_error(client, response, status, **expected)


# --------------------------------------------------------------------------------- nesting


@pytest.mark.parametrize("path", JSON_ROUTES)
def test_json_nested_thousands_deep_is_400_invalid_json(client: Any, path: str) -> None:
    for body in (brackets(5000), b'{"a":' * 100_000 + b"1" + b"}" * 100_000, b"[" * 100_000):
        error = expect_error(client, post_json(client, path, body), 400, code="invalid_json",
                             says=f"more than {MAX_DEPTH} levels")
        assert error["param"] is None


def job_with_metadata_value(depth: int) -> bytes:
    """A job request nested ``depth + 2`` deep: the body, ``metadata``, then the value."""
    value = brackets(depth).decode()
    return f'{{"model": "m", "training_file": "f", "metadata": {{"k": {value}}}}}'.encode()


def test_nesting_at_the_limit_reaches_the_schema(client: Any) -> None:
    # 64 levels are read, then refused by the contract (metadata values are strings).
    at_limit = post_json(client, "/v1/fine_tuning/jobs", job_with_metadata_value(MAX_DEPTH - 2))
    small_error(client, at_limit, 400, param="metadata.k", code="invalid_type")
    over = post_json(client, "/v1/fine_tuning/jobs", job_with_metadata_value(MAX_DEPTH - 1))
    small_error(client, over, 400, code="invalid_json")


def test_query_parameter_nested_thousands_deep_is_400(client: Any) -> None:
    response = client.get("/v1/fine_tuning/jobs?metadata" + "[k]" * 2000 + "=v")
    small_error(client, response, 400, param="metadata", says=f"more than {MAX_DEPTH} levels")
    # One level is the filter the contract takes.
    assert client.get("/v1/fine_tuning/jobs?metadata[k]=v").status_code == 200


def test_jsonl_line_nested_thousands_deep_is_400(client: Any) -> None:
    line = b'{"messages": ' + brackets(5000) + b"}\n"
    small_error(client, post_file(client, chat_lines(2) + line), 400, param="file",
                code="invalid_file_format", says="Line 3 nests")


# ------------------------------------------------------------------------------ huge values


def test_a_20_mb_suffix_is_quoted_by_its_prefix(client: Any) -> None:
    response = post_job(client, training_file=upload(client), suffix="a" * BIG)
    error = small_error(client, response, 400, param="suffix", code="invalid_value",
                        says="is too long")
    # The repr's first 100 characters (its quote and 99 a's), then the rule.
    assert error["message"] == f"Invalid value for 'suffix': '{'a' * 99}… is too long"


def test_metadata_with_200k_keys_is_quoted_by_its_prefix(client: Any) -> None:
    metadata = {f"key{i}": "v" for i in range(200_000)}
    response = post_job(client, training_file=upload(client), metadata=metadata)
    small_error(client, response, 400, param="metadata", says="has too many properties")


def test_a_huge_metadata_key_is_clipped_in_param_too(client: Any) -> None:
    response = post_job(client, training_file=upload(client),
                          metadata={"k" * BIG: "v" * 513})
    error = small_error(client, response, 400, says="is too long")
    assert error["param"] == "metadata." + "k" * 100 + "…"


def test_a_huge_string_inside_chat_completions_is_quoted_by_its_prefix(client: Any) -> None:
    messages = [{"role": "r" * BIG, "content": "hi"}]
    response = client.post("/v1/chat/completions",
                           json={"model": EMBEDDED_MODEL_ID, "messages": messages})
    small_error(client, response, 400, param="messages.0.role", says="is not one of")
    response = client.post("/v1/chat/completions", json={
        "model": "m" * BIG, "messages": [{"role": "user", "content": "hi"}]})
    small_error(client, response, 404, param="model", code="model_not_found")


def test_huge_ids_and_names_elsewhere_are_quoted_by_their_prefix(client: Any) -> None:
    small_error(client, post_job(client, model="m" * BIG, training_file="file-x"), 400,
                param="model", code="model_not_available")
    small_error(client, post_job(client, training_file="f" * BIG), 400,
                param="training_file")
    small_error(client, client.get("/v1/files?order=" + "x" * 8000), 400, param="order")
    small_error(client, client.get("/v1/fine_tuning/jobs/" + "j" * 8000), 404)
    small_error(client, client.get("/v1/models/" + "m" * 8000), 404, code="model_not_found")
    # A form field may be 1 MB (Starlette's part limit; more is a malformed body).
    small_error(client, post_file(client, purpose="p" * 500_000), 400, param="purpose")
