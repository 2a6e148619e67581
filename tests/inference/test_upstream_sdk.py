"""Upstream models on the real path: one real ``tunegate serve`` stands in for the old provider
(OpenAI): it needs a key and answers ``old-model`` (an alias of its own). A second one, the
application's, lists that name in ``TUNEGATE_UPSTREAMS`` and forwards chat and completions for
it, whole and streamed as the source streams, keeps ``store: true`` exchanges, lists the name
in ``GET /v1/models``, and maps the upstream's refusals to its own errors. Then one setting
(an alias named in ``TUNEGATE_MODEL_ALIASES``) switches the name to the local model: it keeps
answering with the old provider gone."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
from openai import OpenAI

from tests.inference.conftest import BASE, FRANCE
from tests.servers import Server, free_port, sdk_client, start_server, stop_server

pytestmark = pytest.mark.e2e

UPSTREAM_KEY = "sk-old-provider-secret-0123456789"
PARAMS = {"messages": FRANCE, "temperature": 0, "max_tokens": 8, "seed": 1}


def upstreams(provider: Server) -> str:
    gone = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    return json.dumps([
        {"name": "old-provider", "base_url": provider.api, "api_key_env": "OLD_PROVIDER_KEY",
         "models": ["old-model", "gpt-4o-mini", "missing-upstream-model"]},
        {"name": "wrong-key", "base_url": provider.api, "api_key_env": "WRONG_PROVIDER_KEY",
         "models": ["wrong-key-model"]},
        {"name": "gone", "base_url": gone, "models": ["gone-model"]}])


@pytest.fixture(scope="module")
def provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = start_server(tmp_path_factory.mktemp("provider"), "--worker", "external", env={
        "TUNEGATE_API_KEY": UPSTREAM_KEY,
        "TUNEGATE_MODEL_ALIASES": f"old-model={BASE},wrong-key-model={BASE}"})
    yield running
    stop_server(running)


@pytest.fixture(scope="module")
def gateway(provider: Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = start_server(tmp_path_factory.mktemp("gateway"), "--worker", "external", env={
        "TUNEGATE_UPSTREAMS": upstreams(provider), "OLD_PROVIDER_KEY": UPSTREAM_KEY,
        "WRONG_PROVIDER_KEY": "sk-not-the-key"})
    yield running
    stop_server(running)


def test_forwarded_chat_whole_and_streamed(provider: Server, gateway: Server) -> None:
    direct = sdk_client(provider, api_key=UPSTREAM_KEY, max_retries=0, timeout=120)
    strict = sdk_client(gateway, max_retries=0, timeout=120, _strict_response_validation=True)
    expected = direct.chat.completions.create(model="old-model", **PARAMS)
    answered = strict.chat.completions.create(model="old-model", **PARAMS)
    assert answered.model == "old-model"
    assert answered.choices[0].message.content == expected.choices[0].message.content
    assert answered.usage == expected.usage

    def pieces(client: OpenAI) -> list[tuple[str | None, str | None]]:
        stream = client.chat.completions.create(model="old-model", stream=True, **PARAMS)
        return [(c.choices[0].delta.content, c.choices[0].finish_reason) for c in stream]

    assert pieces(strict) == pieces(direct)  # event by event, as the source streams
    text = strict.completions.create(model="old-model", prompt="The capital of France is",
                                     max_tokens=4, temperature=0)
    assert text.choices[0].text == direct.completions.create(
        model="old-model", prompt="The capital of France is", max_tokens=4,
        temperature=0).choices[0].text


def test_listed_stored_and_refusals_mapped(gateway: Server) -> None:
    client = sdk_client(gateway, max_retries=0, timeout=120)
    models = {model.id: model.owned_by for model in client.models.list()}
    assert models["old-model"] == "old-provider"
    assert models["gpt-4o-mini"] == "old-provider"  # the default OpenAI aliases do not hide it
    assert client.models.retrieve("old-model").owned_by == "old-provider"

    kept = client.chat.completions.create(model="old-model", store=True,
                                          metadata={"via": "upstream"}, **PARAMS)
    stream = client.chat.completions.create(model="old-model", store=True, stream=True,
                                            metadata={"via": "upstream"}, **PARAMS)
    streamed = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    stored = list(client.chat.completions.list(metadata={"via": "upstream"}))
    assert [c.choices[0].message.content for c in stored] == [
        kept.choices[0].message.content, streamed]
    assert {c.model for c in stored} == {"old-model"}
    assert stored[1].usage is not None  # asked of the upstream for the stored copy

    with pytest.raises(openai.APIStatusError) as refused:
        client.chat.completions.create(model="wrong-key-model", **PARAMS)
    error = refused.value
    assert error.status_code == 503 and error.code == "upstream_unauthorized"
    assert "WRONG_PROVIDER_KEY" in error.message and "sk-not-the-key" not in error.message
    with pytest.raises(openai.APIStatusError) as unreachable:
        client.chat.completions.create(model="gone-model", **PARAMS)
    assert unreachable.value.status_code == 503
    assert unreachable.value.code == "upstream_unavailable"
    with pytest.raises(openai.NotFoundError) as missing:
        client.chat.completions.create(model="missing-upstream-model", **PARAMS)
    assert "old-provider" in missing.value.message
    log = gateway.log_path.read_text(errors="replace")
    assert UPSTREAM_KEY not in log and "sk-not-the-key" not in log


def test_one_alias_switches_the_name_to_the_local_model(provider: Server,
                                                       tmp_path: Path) -> None:
    switched = start_server(tmp_path, "--worker", "external", env={
        "TUNEGATE_UPSTREAMS": upstreams(provider), "OLD_PROVIDER_KEY": UPSTREAM_KEY,
        "TUNEGATE_MODEL_ALIASES": f"*={BASE},old-model={BASE}"})
    try:
        client = sdk_client(switched, max_retries=0, timeout=120)
        stop_server(provider)  # the old provider is gone: only a local model can answer now
        answered = client.chat.completions.create(model="old-model", **PARAMS)
        assert answered.model == "old-model" and answered.choices[0].message.content
        with pytest.raises(openai.APIStatusError) as still_upstream:
            client.chat.completions.create(model="gpt-4o-mini", **PARAMS)
        assert still_upstream.value.code == "upstream_unavailable"
        assert "old-model" not in {m.id: m.owned_by for m in client.models.list()
                                   if m.owned_by == "old-provider"}
    finally:
        stop_server(switched)
