"""OpenAI's stored-completion routes through the app (responses validated against the spec),
with keys: each project sees, updates and deletes only its own; the admin key reads every
project's. Exchanges are kept through the service's ``keep`` (what a ``store: true`` chat
completion calls once its answer is whole), so no model runs here; the real path, a model's
answer stored and read with the SDK, is tests/inference/test_stored_completions_sdk.py."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from tests.api.conftest import ADMIN, ALICE, BOB, TestKey, write_keys_file
from tunegate import ids
from tunegate.api.app import create_app
from tunegate.settings import Settings

PATH = "/v1/chat/completions"


@pytest.fixture
def client(settings: Settings, tmp_path: Path) -> Any:
    app = create_app(replace(settings, keys_file=write_keys_file(tmp_path / "keys.json"),
                             rate_limit=0), validate_responses=True)
    with app.test_client() as test_client:
        test_client.service = app.state_service
        yield test_client


def keep(client: Any, key: TestKey, *, model: str = "gpt-4o",
         metadata: dict[str, str] | None = None, answer: str = "Paris") -> str:
    completion_id = ids.new_id("chatcmpl-")
    body = {"model": model, "store": True, "metadata": metadata,
            "messages": [{"role": "system", "content": "Be brief."},
                         {"role": "user", "content": [{"type": "text", "text": "Capital?"}]}]}
    completion = {"id": completion_id, "object": "chat.completion", "created": 1700000000,
                  "model": model, "system_fingerprint": None,
                  "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6},
                  "choices": [{"index": 0, "logprobs": None, "finish_reason": "stop",
                               "message": {"role": "assistant", "content": answer,
                                           "refusal": None, "tool_calls": None}}]}
    client.service.stored_completions.keep(key.project, body, completion)
    return completion_id


def ids_of(response: Any) -> list[str]:
    assert response.status_code == 200, response.text
    return [item["id"] for item in response.json()["data"]]


def test_list_filters_and_pages(client: Any) -> None:
    first = keep(client, ALICE, metadata={"team": "a", "stage": "prod"})
    second = keep(client, ALICE, model="SmolLM2-135M-Instruct", metadata={"team": "a"})
    third = keep(client, ALICE, metadata={"team": "b"})
    keep(client, BOB, metadata={"team": "a"})
    headers = ALICE.headers
    assert ids_of(client.get(PATH, headers=headers)) == [first, second, third]
    assert ids_of(client.get(PATH, headers=headers, params={"order": "desc"})) == \
        [third, second, first]
    assert ids_of(client.get(PATH, headers=headers, params={"model": "gpt-4o"})) == \
        [first, third]
    assert ids_of(client.get(PATH, headers=headers, params={"metadata[team]": "a"})) == \
        [first, second]
    assert ids_of(client.get(PATH, headers=headers, params={
        "metadata[team]": "a", "metadata[stage]": "prod"})) == [first]
    page = client.get(PATH, headers=headers, params={"limit": 2}).json()
    assert [page["first_id"], page["last_id"], page["has_more"]] == [first, second, True]
    assert ids_of(client.get(PATH, headers=headers, params={"after": second})) == [third]
    assert len(ids_of(client.get(PATH, headers=ADMIN.headers))) == 4


def test_retrieve_update_delete(client: Any) -> None:
    kept = keep(client, ALICE, metadata={"team": "a"})
    one = client.get(f"{PATH}/{kept}", headers=ALICE.headers)
    assert one.status_code == 200
    body = one.json()
    assert body["object"] == "chat.completion" and body["metadata"] == {"team": "a"}
    assert body["choices"][0]["message"]["content"] == "Paris"
    changed = client.post(f"{PATH}/{kept}", headers=ALICE.headers,
                          json={"metadata": {"team": "b", "reviewed": "yes"}})
    assert changed.status_code == 200 and changed.json()["metadata"] == {"team": "b",
                                                                         "reviewed": "yes"}
    cleared = client.post(f"{PATH}/{kept}", headers=ALICE.headers, json={"metadata": None})
    assert cleared.json()["metadata"] == {}
    too_long = client.post(f"{PATH}/{kept}", headers=ALICE.headers,
                           json={"metadata": {"k" * 65: "v"}})
    assert too_long.status_code == 400
    assert too_long.json()["error"]["code"] == "metadata_key_too_long"
    deleted = client.delete(f"{PATH}/{kept}", headers=ALICE.headers)
    assert deleted.json() == {"object": "chat.completion.deleted", "id": kept, "deleted": True}
    gone = client.get(f"{PATH}/{kept}", headers=ALICE.headers)
    assert gone.status_code == 404
    assert gone.json()["error"]["code"] == "completion_not_found"
    assert client.delete(f"{PATH}/{kept}", headers=ALICE.headers).status_code == 404


def test_messages_of_the_request(client: Any) -> None:
    kept = keep(client, ALICE)
    page = client.get(f"{PATH}/{kept}/messages", headers=ALICE.headers)
    assert page.status_code == 200
    messages = page.json()["data"]
    assert [m["id"] for m in messages] == [f"{kept}-0", f"{kept}-1"]
    assert messages[0] == {"id": f"{kept}-0", "role": "system", "content": "Be brief.",
                           "content_parts": None}
    assert messages[1]["content"] == "Capital?"
    assert messages[1]["content_parts"] == [{"type": "text", "text": "Capital?"}]
    reverse = client.get(f"{PATH}/{kept}/messages", headers=ALICE.headers,
                         params={"order": "desc", "limit": 1}).json()
    assert [m["id"] for m in reverse["data"]] == [f"{kept}-1"] and reverse["has_more"]
    rest = client.get(f"{PATH}/{kept}/messages", headers=ALICE.headers,
                      params={"after": f"{kept}-0"}).json()
    assert [m["id"] for m in rest["data"]] == [f"{kept}-1"] and not rest["has_more"]
    wrong = client.get(f"{PATH}/{kept}/messages", headers=ALICE.headers,
                       params={"after": "chatcmpl-other-0"})
    assert wrong.status_code == 400 and wrong.json()["error"]["param"] == "after"


def test_another_projects_completion_is_missing(client: Any) -> None:
    kept = keep(client, ALICE)
    never = ids.new_id("chatcmpl-")
    for method, suffix, body in (("get", "", None), ("post", "", {"metadata": {}}),
                                 ("delete", "", None), ("get", "/messages", None)):
        answers = [getattr(client, method)(f"{PATH}/{completion}{suffix}", headers=BOB.headers,
                                           **({"json": body} if body is not None else {}))
                   for completion in (kept, never)]
        assert [a.status_code for a in answers] == [404, 404]
        assert answers[0].json()["error"]["message"].replace(kept, "X") == \
            answers[1].json()["error"]["message"].replace(never, "X")
    assert ids_of(client.get(PATH, headers=BOB.headers)) == []
    assert client.get(f"{PATH}/{kept}", headers=ALICE.headers).status_code == 200
