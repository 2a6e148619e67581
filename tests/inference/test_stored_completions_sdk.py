"""``store: true`` on the real path: a real ``tunegate serve`` answers chat completions with the
embedded model, keeps them, and the official SDK reads them back with OpenAI's stored-completion
routes, loose and strict (``_strict_response_validation=True``); a streamed answer is stored as
the completion its chunks make up; ``tunegate completions export`` turns them into a training
file the server accepts for fine-tuning."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from openai import NotFoundError, OpenAI

from tests.conftest import Server
from tests.inference.conftest import BASE, FRANCE

pytestmark = pytest.mark.e2e


def ask(client: OpenAI, **params: object) -> str:
    return client.chat.completions.create(  # type: ignore[call-overload, no-any-return]
        model=BASE, messages=FRANCE, temperature=0, max_tokens=8, **params)


def test_stored_exchanges_read_back_with_the_sdk(clients: list[OpenAI]) -> None:
    loose, strict = clients
    answered = ask(strict, store=True, metadata={"run": "sdk", "kind": "whole"})
    ask(loose)  # not stored: store is false by default
    stream = loose.chat.completions.create(model=BASE, messages=FRANCE, temperature=0,
                                           max_tokens=8, store=True, stream=True,
                                           metadata={"run": "sdk", "kind": "stream"})
    chunks = list(stream)
    assert all(chunk.usage is None for chunk in chunks)  # usage was not asked for
    streamed_text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)

    for client in clients:
        listed = list(client.chat.completions.list(metadata={"run": "sdk"}))
        assert [c.id for c in listed] == [answered.id, chunks[0].id]
        whole, streamed = listed
        assert whole.choices[0].message.content == answered.choices[0].message.content
        assert whole.usage == answered.usage
        assert streamed.choices[0].message.content == streamed_text
        assert streamed.usage is not None and streamed.usage.completion_tokens > 0
        assert streamed.metadata == {"run": "sdk", "kind": "stream"}
        assert [c.id for c in client.chat.completions.list(
            metadata={"run": "sdk", "kind": "stream"})] == [streamed.id]
        assert [c.id for c in client.chat.completions.list(model="gpt-4o")] == []
        assert [c.id for c in client.chat.completions.list(order="desc", limit=1)][0] == \
            streamed.id
        assert client.chat.completions.retrieve(answered.id).model == BASE

    changed = strict.chat.completions.update(answered.id, metadata={"run": "sdk",
                                                                    "reviewed": "yes"})
    assert changed.metadata == {"run": "sdk", "reviewed": "yes"}
    # The SDK types a stored message as an assistant message, so only a loose client reads
    # the request's system and user messages (OpenAI's answer has those roles too).
    messages = list(loose.chat.completions.messages.list(answered.id))
    assert [(m.id, m.role, m.content) for m in messages] == [
        (f"{answered.id}-{index}", message["role"], message["content"])
        for index, message in enumerate(FRANCE)]
    deleted = strict.chat.completions.delete(streamed.id)
    assert deleted.deleted and deleted.id == streamed.id
    with pytest.raises(NotFoundError):
        strict.chat.completions.retrieve(streamed.id)


def test_export_makes_a_training_file(server: Server, clients: list[OpenAI],
                                      tmp_path: Path) -> None:
    loose, _ = clients
    answered = ask(loose, store=True, metadata={"run": "export"})
    ask(loose, store=True, metadata={"run": "elsewhere"})
    output = tmp_path / "train.jsonl"
    export = [sys.executable, "-m", "tunegate", "completions", "export", "--url", server.api,
              "--metadata", "run=export"]
    subprocess.run([*export, "--output", str(output)], check=True, timeout=60)
    lines = [json.loads(line) for line in output.read_text().splitlines()]
    assert lines == [{"messages": [*FRANCE, {
        "role": "assistant", "content": answered.choices[0].message.content}]}]
    uploaded = subprocess.run([*export, "--upload", "answers.jsonl"], check=True, timeout=60,
                              capture_output=True, text=True)
    file = loose.files.retrieve(uploaded.stdout.strip())
    assert (file.filename, file.purpose, file.status) == ("answers.jsonl", "fine-tune",
                                                          "processed")
    job = loose.fine_tuning.jobs.create(model=BASE, training_file=file.id)  # accepted as data
    loose.fine_tuning.jobs.cancel(job.id)
