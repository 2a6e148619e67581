"""What an outside schemathesis run needs ships in the package (tunegate/contract/): the config
names hooks that live in the package, not in tests/, and is package data; the hooks' own
requests wait out a 429 as its Retry-After says instead of failing the run.

(tests/e2e/test_schemathesis_cli.py runs the documented command from a folder outside the
checkout against a real server.)
"""

from __future__ import annotations

import fnmatch
import importlib
import json
import tomllib
from pathlib import Path

import httpx
import pytest

import tunegate
from tunegate.contract import CONFIG
from tunegate.contract.hooks import MAX_WAIT_SECONDS, RATE_LIMITED_TRIES, Server, retry_after

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = Path(tunegate.__file__).resolve().parent
MODELS = {"object": "list", "data": [{"id": "SmolLM2-135M-Instruct", "object": "model"},
                                     {"id": "ft:SmolLM2-135M-Instruct:org-local::abcd1234",
                                      "object": "model"}]}


def test_the_shipped_config_names_hooks_inside_the_package() -> None:
    config = tomllib.loads(CONFIG.read_text(encoding="utf-8"))
    hooks = importlib.import_module(config["hooks"])
    assert hooks.__file__ is not None
    assert PACKAGE in Path(hooks.__file__).resolve().parents, (
        f"{config['hooks']} is not part of the tunegate package: an outside run cannot load it")
    # A wheel holds no tests/: nothing the hooks load may come from there.
    for module in (hooks, importlib.import_module("tunegate.contract.rules")):
        source = Path(str(module.__file__)).read_text(encoding="utf-8")
        assert "from tests" not in source and "import tests" not in source, module.__name__


def test_the_shipped_config_is_package_data_and_the_repositorys_own() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    patterns = pyproject["tool"]["setuptools"]["package-data"]["tunegate"]
    relative = CONFIG.relative_to(PACKAGE).as_posix()
    assert any(fnmatch.fnmatch(relative, pattern) for pattern in patterns)
    # A run from the repository root (no --config-file) reads the very same rules.
    assert CONFIG.read_bytes() == (ROOT / "schemathesis.toml").read_bytes()


class FakeRateLimitedServer:
    """Answers 429 (with ``retry_after`` as its header, when given) ``limited`` times, then
    the models list; records the requests."""

    def __init__(self, limited: int, retry_after: str | None) -> None:
        self.limited = limited
        self.retry_after = retry_after
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if len(self.requests) <= self.limited:
            headers = {"retry-after": self.retry_after} if self.retry_after is not None else {}
            return httpx.Response(429, headers=headers, json={"error": {
                "message": "Rate limit reached", "type": "requests", "param": None,
                "code": "rate_limit_exceeded"}})
        return httpx.Response(200, content=json.dumps(MODELS).encode(),
                              headers={"content-type": "application/json"})


def _server(fake: FakeRateLimitedServer, waits: list[float]) -> Server:
    client = httpx.Client(transport=httpx.MockTransport(fake))
    return Server("http://tunegate.test/v1", {"Authorization": "Bearer sk-tg-x"},
                  client=client, sleep=waits.append)


def test_a_429_is_waited_out_as_its_retry_after_says() -> None:
    fake = FakeRateLimitedServer(limited=2, retry_after="7")
    waits: list[float] = []
    assert _server(fake, waits).base_models() == ["SmolLM2-135M-Instruct"]
    assert waits == [7.0, 7.0]
    assert len(fake.requests) == 3
    assert all(r.headers["authorization"] == "Bearer sk-tg-x" for r in fake.requests)


def test_a_server_that_stays_limited_fails_the_run_after_the_last_try() -> None:
    fake = FakeRateLimitedServer(limited=RATE_LIMITED_TRIES, retry_after="1")
    waits: list[float] = []
    with pytest.raises(httpx.HTTPStatusError, match="429"):
        _server(fake, waits).base_models()
    assert len(fake.requests) == RATE_LIMITED_TRIES
    assert waits == [1.0] * (RATE_LIMITED_TRIES - 1)


@pytest.mark.parametrize(("header", "seconds"), [
    ("3", 3.0), ("0", 0.0), (None, 1.0), ("soon", 1.0), ("86400", MAX_WAIT_SECONDS)])
def test_retry_after_reads_seconds_with_a_default_and_a_ceiling(
        header: str | None, seconds: float) -> None:
    headers = {"retry-after": header} if header is not None else {}
    assert retry_after(httpx.Response(429, headers=headers)) == seconds


def test_generated_logit_bias_keeps_only_token_ids_every_vocabulary_has() -> None:
    """schemathesis writes any string as a key; the server refuses all but the model's token
    ids (400 logit_bias), so a positive case keeps only ids below 256."""
    from tunegate.contract import rules

    body = {"model": "x", "prompt": "hi", "logit_bias": {"abc": 1, "7": 5, "100000": 1, "": 2,
                                                         "-3": 1, "255": -100}}
    rules._generation(body, "POST /completions", "base")
    assert body["logit_bias"] == {"7": 5, "255": -100}
