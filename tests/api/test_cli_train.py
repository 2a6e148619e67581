"""``tunegate train`` and ``jobs`` against the real app in process (the SDK over Starlette's
test transport): the server's root URL works as well as its /v1 URL, and a train attempt that
makes no job leaves no file behind. The real server, training, is in tests/e2e/test_cli.py."""

from __future__ import annotations

import argparse
import io
from pathlib import Path
from typing import Any

import pytest
from openai import OpenAI

from tests.conftest import chat_lines
from tunegate.client.commands import EXIT_FAILED, Terminal, run
from tunegate.client.connection import Connection, api_url
from tunegate.domain.catalog import EMBEDDED_MODEL_ID


@pytest.fixture
def through_app(client: Any, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every client command talks to the in-process app; the paths it asked for."""
    asked: list[str] = []

    def to_app(self: Connection) -> OpenAI:
        client.event_hooks = {"request": [lambda request: asked.append(
            f"{request.method} {request.url.path}")]}
        return OpenAI(base_url=self.url, api_key=self.api_key, http_client=client,
                      max_retries=0)

    monkeypatch.setattr(Connection, "client", to_app)
    return asked


def command(*words: str, **flags: Any) -> tuple[int, str, str]:
    terminal = Terminal(out=io.StringIO(), err=io.StringIO())
    args = argparse.Namespace(command=words[0], **flags)
    if words[0] == "jobs":
        args.jobs_command = words[1]
    code = run(args, terminal)
    return code, terminal.out.getvalue(), terminal.err.getvalue()


@pytest.mark.parametrize(("given", "base"), [
    ("http://127.0.0.1:8000", "http://127.0.0.1:8000/v1"),
    ("http://127.0.0.1:8000/", "http://127.0.0.1:8000/v1"),
    ("http://127.0.0.1:8000/v1", "http://127.0.0.1:8000/v1"),
    ("http://127.0.0.1:8000/v1/", "http://127.0.0.1:8000/v1"),
    ("https://gpu-box/tunegate", "https://gpu-box/tunegate/v1"),
])
def test_the_root_url_and_the_v1_url_name_the_same_api(given: str, base: str) -> None:
    assert api_url(given) == base
    assert Connection.resolve(None, {"TUNEGATE_URL": given}).url == base


@pytest.mark.parametrize("url", ["http://testserver", "http://testserver/v1"])
def test_jobs_list_answers_on_the_root_url_and_on_v1(through_app: list[str], url: str) -> None:
    code, out, err = command("jobs", "list", url=url, limit=5, json=True)
    assert (code, out, err) == (0, "", "")
    assert through_app == ["GET /v1/fine_tuning/jobs"]


def train_args(tmp_path: Path, model: str, validation: bytes | None = None) -> dict[str, Any]:
    training = tmp_path / "train.jsonl"
    training.write_bytes(chat_lines(12))
    held_out = None
    if validation is not None:
        held_out = tmp_path / "valid.jsonl"
        held_out.write_bytes(validation)
    return {"url": "http://testserver", "file": training, "validation_file": held_out,
            "model": model, "suffix": None, "method": "supervised", "epochs": None,
            "batch_size": None, "learning_rate_multiplier": None, "seed": None}


def files_on(client: Any) -> list[Any]:
    return list(client.get("/v1/files").json()["data"])


def test_an_unknown_model_is_refused_before_anything_is_uploaded(
        client: Any, through_app: list[str], tmp_path: Path) -> None:
    code, out, err = command("train", **train_args(tmp_path, "SmolLM-typo"))
    assert code == EXIT_FAILED and out == ""
    assert err == ("error: The model `SmolLM-typo` does not exist or you do not have access to "
                   "it. (HTTP 404, code model_not_found)\n")
    assert through_app == ["GET /v1/models/SmolLM-typo"]
    assert files_on(client) == []


def test_a_refused_validation_file_takes_the_training_file_back(
        client: Any, through_app: list[str], tmp_path: Path) -> None:
    code, _, err = command("train", **train_args(tmp_path, EMBEDDED_MODEL_ID,
                                                 validation=b'{"broken": \n'))
    assert code == EXIT_FAILED
    assert "Deleted file-" in err and "code invalid_file_format" in err
    assert files_on(client) == []
    assert client.get("/v1/fine_tuning/jobs").json()["data"] == []


def test_a_refused_job_takes_its_files_back(client: Any, through_app: list[str],
                                            tmp_path: Path) -> None:
    args = train_args(tmp_path, EMBEDDED_MODEL_ID, validation=chat_lines(3))
    args["suffix"] = "not:allowed"  # the job request is refused after both uploads
    code, _, err = command("train", **args)
    assert code == EXIT_FAILED and err.count("Deleted file-") == 2, err
    assert files_on(client) == []
