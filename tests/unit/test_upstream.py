"""The upstream setting read (inline JSON or a file; a bad one stops the process with why) and
an upstream's refusals turned into tunegate's errors, without leaking its key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tunegate.serving.upstream import UpstreamUnavailable, refusal
from tunegate.settings import Settings, Upstream

UPSTREAM = Upstream(name="openai", base_url="https://api.example/v1", api_key_env="OLD_KEY",
                    models=("old-model",))
ENTRY = {"name": "openai", "base_url": "https://api.example/v1/", "api_key_env": "OLD_KEY",
         "models": ["old-model", "ft:gpt-4o-mini-2024-07-18:org:x:abc"]}


def test_read_inline_or_from_a_file(tmp_path: Path) -> None:
    inline = Settings.from_env({"TUNEGATE_UPSTREAMS": json.dumps([ENTRY])}).upstreams
    assert inline == (Upstream("openai", "https://api.example/v1", "OLD_KEY",
                               ("old-model", "ft:gpt-4o-mini-2024-07-18:org:x:abc")),)
    path = tmp_path / "upstreams.json"
    path.write_text(json.dumps([ENTRY]))
    assert Settings.from_env({"TUNEGATE_UPSTREAMS": str(path)}).upstreams == inline
    assert Settings.from_env({}).upstreams == ()


@pytest.mark.parametrize("value", [
    "[{]", "{}", json.dumps([{"base_url": "x"}]), json.dumps([{**ENTRY, "api_key": "sk-1"}]),
    json.dumps([ENTRY, {**ENTRY, "name": "again"}]), "/no/such/upstreams.json",
    json.dumps(["https://api.example/v1"]), json.dumps([{**ENTRY, "models": [""]}]),
    json.dumps([{**ENTRY, "base_url": 1}])])
def test_a_bad_setting_says_why(value: str) -> None:
    with pytest.raises(ValueError, match="TUNEGATE_UPSTREAMS"):
        Settings.from_env({"TUNEGATE_UPSTREAMS": value})


def test_only_aliases_named_one_by_one_win_over_upstreams() -> None:
    settings = Settings.from_env({"TUNEGATE_MODEL_ALIASES": "*=SmolLM2-135M-Instruct,old=B"})
    assert settings.named_aliases == {"old"}
    assert Settings.from_env({"TUNEGATE_MODEL_ALIASES": "off"}).named_aliases == frozenset()


def test_the_key_is_read_at_each_use(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OLD_KEY", "sk-first")
    assert UPSTREAM.api_key() == "sk-first"
    monkeypatch.setenv("OLD_KEY", "sk-rotated")
    assert UPSTREAM.api_key() == "sk-rotated"
    assert "sk-" not in repr(UPSTREAM)


def error_body(message: str, code: str | None = None, param: str | None = None) -> str:
    return json.dumps({"error": {"message": message, "type": "x", "param": param, "code": code}})


def test_refusals_become_our_errors() -> None:
    bad = refusal(UPSTREAM, 400, error_body("n too big", "invalid_value", "n"), None)
    assert (bad.status, bad.code, bad.param) == (400, "invalid_value", "n")
    assert "openai answered 400: n too big" in bad.message
    missing = refusal(UPSTREAM, 404, error_body("no model"), None)
    assert (missing.status, missing.code, missing.param) == (404, "model_not_found", "model")
    limited = refusal(UPSTREAM, 429, error_body("slow down"), "7")
    assert (limited.status, limited.retry_after, limited.code) == (429, 7,
                                                                  "upstream_rate_limited")
    key = refusal(UPSTREAM, 401, error_body("Incorrect API key provided: sk-abc"), None)
    assert isinstance(key, UpstreamUnavailable) and key.code == "upstream_unauthorized"
    assert "OLD_KEY" in key.message and key.retryable is False
    assert "sk-abc" not in key.message
    for status in (500, 502, 408):
        failed = refusal(UPSTREAM, status, "<html>bad gateway</html>", None)
        assert (failed.status, failed.code) == (503, "upstream_unavailable")
        assert "bad gateway" in failed.message
