"""The contract's patterns match whole values (tunegate.api.patterns): ``$`` is the end of the
text, as in JSON Schema, not also the place before a final newline, as in Python's ``re``."""

from __future__ import annotations

from typing import Any

import pytest

from tests.helpers import expect_error, post_job, upload
from tunegate.api.patterns import whole_text


@pytest.mark.parametrize("suffix", ["nl\n", "..", ".", "...", "ok\n\n", "\nok"])
def test_a_suffix_that_is_not_a_plain_name_is_400(client: Any, suffix: str) -> None:
    response = post_job(client, training_file=upload(client), suffix=suffix)
    error = expect_error(client, response, 400, param="suffix", says="is not a valid suffix")
    assert "not dots alone" in error["message"]


@pytest.mark.parametrize("suffix", ["nl", "v1.2", "a..b", ".hidden", "my-suffix_2"])
def test_a_plain_suffix_names_a_model_that_can_be_retrieved(client: Any, suffix: str) -> None:
    response = post_job(client, training_file=upload(client), suffix=suffix)
    assert response.status_code == 200, response.text
    job = client.get(f"/v1/fine_tuning/jobs/{response.json()['id']}").json()
    assert job["user_provided_suffix"] == suffix


def test_a_mime_type_ending_in_a_line_break_is_400(client: Any) -> None:
    response = client.post("/v1/uploads", json={
        "filename": "train.jsonl", "purpose": "fine-tune", "bytes": 10,
        "mime_type": "text/jsonl\n"})
    expect_error(client, response, 400, param="mime_type")


def test_a_cursor_ending_in_a_line_break_is_400(client: Any) -> None:
    expect_error(client, client.get("/v1/fine_tuning/jobs?after=ftjob-abc%0A"), 400,
                 param="after")
    expect_error(client, client.get("/v1/files?after=file-abc%0A"), 400, param="after")


@pytest.mark.parametrize(("pattern", "text", "matches"), [
    ("^[a-z]+$", "abc", True),
    ("^[a-z]+$", "abc\n", False),
    ("^[$a]+$", "$a$", True),  # a $ inside a class is a character
    (r"^a\$$", "a$", True),  # so is an escaped one
    (r"^a\$$", "a$\n", False),
    ("^(?!x$)[a-z]+$", "x", False),
    ("^(?!x$)[a-z]+$", "x\n", False),
    ("^(?!x$)[a-z]+$", "xy", True),
])
def test_a_dollar_is_the_end_of_the_text(pattern: str, text: str, matches: bool) -> None:
    assert (whole_text(pattern).search(text) is not None) is matches
