"""Stored chat completions in the store, on every backend: kept per project, listed with
OpenAI's filters and paging in both orders, metadata replaced, deleted."""

from __future__ import annotations

from typing import Any

from tunegate import ids
from tunegate.domain.stored_completions import StoredCompletion
from tunegate.store import SqlStore

PROJECT = "default"


def keep(store: SqlStore, *, project: str = PROJECT, model: str = "SmolLM2-135M-Instruct",
         metadata: dict[str, str] | None = None, answer: str = "Paris") -> StoredCompletion:
    completion_id = ids.new_id("chatcmpl-")
    completion: dict[str, Any] = {
        "id": completion_id, "object": "chat.completion", "created": 1, "model": model,
        "system_fingerprint": None, "usage": None, "choices": [{
            "index": 0, "message": {"role": "assistant", "content": answer}, "logprobs": None,
            "finish_reason": "stop"}]}
    stored = StoredCompletion(id=completion_id, project_id=project, created_at=1, model=model,
                              metadata=metadata or {}, tools=None, completion=completion,
                              messages=[{"role": "user", "content": "Capital of France?"}])
    store.add_stored_completion(stored)
    return stored


def listed(store: SqlStore, project: str | None = PROJECT, **filters: Any) -> list[str]:
    options: dict[str, Any] = {"model": None, "metadata": None, "after": None, "limit": 100,
                               "ascending": True, **filters}
    return [item.id for item in store.list_stored_completions(project, **options).items]


def test_kept_and_read_back_per_project(store: SqlStore) -> None:
    mine = keep(store, metadata={"team": "a"})
    theirs = keep(store, project="other")
    assert store.get_stored_completion(PROJECT, mine.id) == mine
    assert store.get_stored_completion(PROJECT, theirs.id) is None
    assert store.get_stored_completion(None, theirs.id) == theirs  # an admin's read
    assert listed(store) == [mine.id]
    assert listed(store, None) == [mine.id, theirs.id]


def test_filters_by_model_and_every_metadata_pair(store: SqlStore) -> None:
    both = keep(store, metadata={"team": "a", "stage": "prod"})
    team = keep(store, metadata={"team": "a"})
    other_model = keep(store, model="gpt-4o", metadata={"team": "a"})
    assert listed(store, metadata={"team": "a"}) == [both.id, team.id, other_model.id]
    assert listed(store, metadata={"team": "a", "stage": "prod"}) == [both.id]
    assert listed(store, metadata={"team": "b"}) == []
    assert listed(store, model="gpt-4o") == [other_model.id]
    assert listed(store, model="gpt-4o", metadata={"stage": "prod"}) == []


def test_pages_both_ways(store: SqlStore) -> None:
    kept = [keep(store).id for _ in range(5)]
    first = store.list_stored_completions(PROJECT, model=None, metadata=None, after=None,
                                          limit=2, ascending=True)
    assert [item.id for item in first.items] == kept[:2] and first.has_more
    assert listed(store, after=kept[1]) == kept[2:]
    assert listed(store, ascending=False) == kept[::-1]
    assert listed(store, ascending=False, after=kept[2]) == kept[1::-1]
    last = store.list_stored_completions(PROJECT, model=None, metadata=None, after=kept[2],
                                         limit=2, ascending=True)
    assert not last.has_more


def test_metadata_replaced_and_deleted_within_the_project(store: SqlStore) -> None:
    stored = keep(store, metadata={"team": "a"})
    assert store.set_stored_completion_metadata("other", stored.id, {"x": "y"}) is None
    changed = store.set_stored_completion_metadata(PROJECT, stored.id, {"team": "b"})
    assert changed is not None and changed.metadata == {"team": "b"}
    assert listed(store, metadata={"team": "a"}) == []
    assert not store.delete_stored_completion("other", stored.id)
    assert store.delete_stored_completion(PROJECT, stored.id)
    assert store.get_stored_completion(PROJECT, stored.id) is None
    assert not store.delete_stored_completion(PROJECT, stored.id)
