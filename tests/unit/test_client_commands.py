"""The client commands' plumbing against a fake server (an ``httpx.MockTransport`` behind the
real SDK): which server and key, errors as one line, the polling feed's de-duplication, Ctrl-C,
chat streamed as it arrives. The real server is in tests/e2e/test_cli.py."""

from __future__ import annotations

import argparse
import io
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from openai import OpenAI

from tests.unit.test_client_display import fake_job, message
from tunegate.cli import main
from tunegate.client.commands import Terminal, chat, interrupted, method_of, train
from tunegate.client.connection import DEFAULT_URL, NO_KEY, Connection
from tunegate.client.feed import HISTORY_LIMIT, JobFeed

Handler = Callable[[httpx.Request], httpx.Response]


def fake_server_client(handler: Handler) -> OpenAI:
    return OpenAI(base_url="http://fake-server/v1", api_key="sk-test", max_retries=0,
                  http_client=httpx.Client(transport=httpx.MockTransport(handler)))


class FakeTerminalInput(io.StringIO):
    """A stdin that says it is a terminal, holding what the user types."""

    def isatty(self) -> bool:
        return True


def test_the_server_and_key_come_from_flags_then_the_environment() -> None:
    assert Connection.resolve(None, {}) == Connection(DEFAULT_URL, NO_KEY)
    env = {"TUNEGATE_URL": "http://gpu-box:8000/v1/", "OPENAI_API_KEY": "sk-openai"}
    assert Connection.resolve(None, env) == Connection("http://gpu-box:8000/v1", "sk-openai")
    env["TUNEGATE_API_KEY"] = "sk-tg-mine"
    assert Connection.resolve("http://other/v1", env) == Connection("http://other/v1",
                                                                    "sk-tg-mine")
    assert Connection.resolve(None, {}).url_flag() == ""
    assert Connection.resolve("http://other/v1", {}).url_flag() == " --url http://other/v1"


def test_an_unreachable_server_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["jobs", "list", "--url", "http://127.0.0.1:9/v1"])  # port 9: nothing listens
    assert exit_info.value.code == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1 and "Traceback" not in captured.err
    assert captured.err.startswith("error: cannot reach a server at http://127.0.0.1:9/v1")


@pytest.mark.parametrize(("status", "body", "says"), [
    (404, {"error": {"message": "No such fine-tuning job: ftjob-x", "type": "invalid_request_error",
                     "param": None, "code": None}},
     "error: No such fine-tuning job: ftjob-x (HTTP 404)\n"),
    (409, {"error": {"message": "Job is succeeded", "type": "invalid_request_error",
                     "param": None, "code": "invalid_job_status"}},
     "error: Job is succeeded (HTTP 409, code invalid_job_status)\n"),
    (501, {"detail": "Fine-tuning is not implemented in the local llama.cpp gateway"},
     "error: Fine-tuning is not implemented in the local llama.cpp gateway (HTTP 501)\n"),
])
def test_a_refusal_prints_the_servers_message_and_code(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], status: int,
        body: dict[str, Any], says: str) -> None:
    client = fake_server_client(lambda request: httpx.Response(status, json=body))
    monkeypatch.setattr(Connection, "client", lambda self: client)
    with pytest.raises(SystemExit) as exit_info:
        main(["jobs", "cancel", "ftjob-x"])
    assert exit_info.value.code == 1
    assert capsys.readouterr().err == says


def test_the_feed_pages_newest_first_and_gives_each_event_once_oldest_first() -> None:
    """The fake server holds 150 events, then 3 more; list_events pages with ``after``."""
    events = [message(n, f"event {n}").model_dump() for n in range(150)]
    requests: list[str] = []

    def fake_server(request: httpx.Request) -> httpx.Response:
        requests.append(str(request.url.query, "ascii"))
        if request.url.path.endswith("/events"):
            newest_first = events[::-1]
            after = request.url.params.get("after")
            start = next(i + 1 for i, e in enumerate(newest_first) if e["id"] == after) \
                if after else 0
            page = newest_first[start:start + int(request.url.params["limit"])]
            return httpx.Response(200, json={"object": "list", "data": page,
                                             "has_more": start + len(page) < len(events)})
        return httpx.Response(200, json=fake_job("running").model_dump())

    feed = JobFeed(fake_server_client(fake_server), "ftjob-fake")
    first = feed.poll()
    assert [e.message for e in first.events] == [f"event {n}" for n in range(50, 150)]
    assert len(first.events) == HISTORY_LIMIT  # not the whole history of a long job
    assert feed.poll().events == []
    events.extend(message(n, f"event {n}").model_dump() for n in range(150, 153))
    assert [e.message for e in feed.poll().events] == ["event 150", "event 151", "event 152"]
    assert all("after" not in query for query in requests)  # one page a poll sufficed
    events.extend(message(n, f"event {n}").model_dump() for n in range(153, 273))
    assert [e.message for e in feed.poll().events] == [f"event {n}" for n in range(153, 273)]
    assert "after=ftevent-173" in requests[-1]  # more than a page since: the next one read


def _cancelling_client(cancelled: list[str]) -> OpenAI:
    def fake_server(request: httpx.Request) -> httpx.Response:
        assert request.method == "POST" and request.url.path.endswith("/cancel")
        cancelled.append(request.url.path)
        return httpx.Response(200, json=fake_job("cancelled").model_dump())
    return fake_server_client(fake_server)


@pytest.mark.parametrize(("stdin", "code", "cancels"), [
    (io.StringIO("y\n"), 130, False),  # not a terminal: never asks, never cancels
    (FakeTerminalInput("\n"), 130, False),  # the default answer: leave it running
    (FakeTerminalInput("y\n"), 1, True),
    (FakeTerminalInput(""), 130, False),  # end of input: leave it
])
def test_ctrl_c_cancels_only_when_asked_to(stdin: io.StringIO, code: int, cancels: bool) -> None:
    cancelled: list[str] = []
    terminal = Terminal(out=io.StringIO(), err=io.StringIO(), stdin=stdin)
    got = interrupted(_cancelling_client(cancelled), "ftjob-fake",
                      Connection("http://gpu-box/v1", NO_KEY), terminal)
    assert got == code and bool(cancelled) == cancels
    asked = "Cancel job ftjob-fake? [y/N]" in terminal.out.getvalue()
    assert asked == stdin.isatty()
    if cancels:
        assert terminal.err.getvalue() == "Job ftjob-fake cancelled.\n"
    else:
        assert terminal.err.getvalue().strip() == (
            "Job ftjob-fake left running; follow it again with: "
            "tunegate jobs follow --url http://gpu-box/v1 ftjob-fake")


class RecordingOutput(io.StringIO):
    """Notes what had been written at each flush."""

    def __init__(self) -> None:
        super().__init__()
        self.flushed: list[str] = []

    def flush(self) -> None:
        self.flushed.append(self.getvalue())


def test_chat_writes_each_token_as_it_arrives(monkeypatch: pytest.MonkeyPatch) -> None:
    tokens = ["The", " code", " word", " is", " blue5", "."]

    def chunk(delta: dict[str, Any], finish: str | None = None) -> str:
        return "data: " + json.dumps({
            "id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "m",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}) + "\n\n"

    def fake_server(request: httpx.Request) -> httpx.Response:
        sent = json.loads(request.content)
        assert sent["stream"] is True and sent["messages"][-1]["content"] == "Zorb-5?"
        assert "temperature" not in sent and sent["max_tokens"] == 256
        body = chunk({"role": "assistant", "content": ""}) + "".join(
            chunk({"content": token}) for token in tokens) + chunk({}, "stop") + "data: [DONE]\n\n"
        return httpx.Response(200, content=body.encode(),
                              headers={"content-type": "text/event-stream"})

    client = fake_server_client(fake_server)
    monkeypatch.setattr(Connection, "client", lambda self: client)
    out = RecordingOutput()
    args = argparse.Namespace(model="m", prompt="Zorb-5?", system=None, max_tokens=256,
                              temperature=None)
    assert chat(args, Connection(DEFAULT_URL, NO_KEY), Terminal(out=out)) == 0
    assert out.getvalue() == "The code word is blue5.\n"
    assert [text for text in out.flushed if text][:len(tokens)] == [
        "".join(tokens[:n]) for n in range(1, len(tokens) + 1)]  # flushed token by token


def test_train_flags_become_the_jobs_method() -> None:
    args = argparse.Namespace(method="dpo", epochs=2, batch_size=None,
                              learning_rate_multiplier=0.5)
    assert method_of(args) == {"type": "dpo", "dpo": {"hyperparameters": {
        "n_epochs": 2, "learning_rate_multiplier": 0.5}}}
    args = argparse.Namespace(method="supervised", epochs=None, batch_size=None,
                              learning_rate_multiplier=None)
    assert method_of(args) == {"type": "supervised", "supervised": {"hyperparameters": {}}}


def test_reinforcement_flags_and_the_grader_become_the_jobs_method() -> None:
    args = argparse.Namespace(method="reinforcement", epochs=None, batch_size=4,
                              learning_rate_multiplier=None, compute_multiplier=2.0,
                              eval_interval=None, eval_samples=3, reasoning_effort="low")
    grader = {"type": "string_check", "name": "g", "input": "{{sample.output_text}}",
              "reference": "{{item.answer}}", "operation": "eq"}
    assert method_of(args, grader) == {"type": "reinforcement", "reinforcement": {
        "grader": grader, "hyperparameters": {"batch_size": 4, "compute_multiplier": 2.0,
                                              "eval_samples": 3, "reasoning_effort": "low"}}}


@pytest.mark.parametrize(("flags", "says"), [
    (["--method", "reinforcement"], "--method reinforcement needs --grader FILE"),
    (["--grader", "GRADER"], "--grader is for --method reinforcement"),
    (["--method", "reinforcement", "--grader", "BROKEN"], "cannot read the grader"),
    (["--method", "reinforcement", "--grader", "LIST"], "must hold a JSON object"),
])
def test_train_refuses_a_bad_grader_flag_before_any_request(
        capsys: pytest.CaptureFixture[str], tmp_path: Any, flags: list[str], says: str) -> None:
    files = {"GRADER": '{"type": "string_check"}', "BROKEN": "{not json", "LIST": "[]"}
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    (tmp_path / "train.jsonl").write_text("{}\n")
    flags = [str(tmp_path / flag) if flag in files else flag for flag in flags]
    with pytest.raises(SystemExit) as exit_info:
        main(["train", str(tmp_path / "train.jsonl"), "--model", "m", "--url",
              "http://127.0.0.1:9/v1", *flags])
    assert exit_info.value.code == 2
    assert says in capsys.readouterr().err


def test_train_refuses_a_missing_file_before_any_request(capsys: pytest.CaptureFixture[str],
                                                         tmp_path: Any) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["train", str(tmp_path / "nope.jsonl"), "--model", "m", "--url",
              "http://127.0.0.1:9/v1"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == f"tunegate train: no such file: {tmp_path / 'nope.jsonl'}\n"


class FakeTrainingServer:
    """Answers what ``tunegate train`` asks, the way a server would: the uploads, the job
    (running for one poll, then succeeded) and its events."""

    def __init__(self) -> None:
        self.uploads: list[bytes] = []
        self.created: dict[str, Any] = {}
        self.polls = 0
        self.asked: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        self.asked.append(f"{request.method} {path}")
        if path.startswith("/v1/models/"):
            return httpx.Response(200, json={"id": path.rsplit("/", 1)[1], "object": "model",
                                             "created": 1, "owned_by": "operator"})
        if path == "/v1/files":
            self.uploads.append(request.content)
            return httpx.Response(200, json={
                "id": f"file-{len(self.uploads)}", "object": "file", "bytes": 120,
                "created_at": 1, "filename": "x.jsonl", "purpose": "fine-tune",
                "status": "processed"})
        if path == "/v1/fine_tuning/jobs" and request.method == "POST":
            self.created = json.loads(request.content)
            return httpx.Response(200, json=fake_job("validating_files").model_dump())
        if path.endswith("/events"):
            return httpx.Response(200, json={"object": "list", "has_more": False, "data": [
                message(n, f"event {n}").model_dump() for n in range(self.polls, 0, -1)]})
        self.polls += 1
        if self.polls == 1:
            return httpx.Response(200, json=fake_job("running").model_dump())
        return httpx.Response(200, json=fake_job(
            "succeeded", fine_tuned_model="ft:base:org-local:s:fake").model_dump())


def test_train_uploads_creates_with_the_flags_and_follows_to_the_end(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    server = FakeTrainingServer()
    client = fake_server_client(server)
    monkeypatch.setattr(Connection, "client", lambda self: client)
    monkeypatch.setattr("tunegate.client.follow.POLL_SECONDS", 0.0)
    (tmp_path / "pairs.jsonl").write_text('{"pair": 1}\n')
    (tmp_path / "held-out.jsonl").write_text('{"pair": 2}\n')
    args = argparse.Namespace(
        file=tmp_path / "pairs.jsonl", validation_file=tmp_path / "held-out.jsonl",
        model="base", suffix="s", method="dpo", epochs=3, batch_size=2,
        learning_rate_multiplier=None, seed=7)
    terminal = Terminal(out=io.StringIO(), err=io.StringIO())
    assert train(args, Connection("http://fake-server/v1", NO_KEY), terminal) == 0
    assert server.asked[:4] == ["GET /v1/models/base", "POST /v1/files", "POST /v1/files",
                                "POST /v1/fine_tuning/jobs"]  # the model before any upload
    assert [b'{"pair": 1}' in body for body in server.uploads] == [True, False]
    assert all(b'name="purpose"\r\n\r\nfine-tune' in body for body in server.uploads)
    assert server.created == {
        "model": "base", "training_file": "file-1", "validation_file": "file-2", "suffix": "s",
        "seed": 7, "method": {"type": "dpo", "dpo": {"hyperparameters": {
            "n_epochs": 3, "batch_size": 2}}}}
    lines = terminal.out.getvalue().splitlines()
    assert [line.split(" ", 1)[1] for line in lines[3:5]] == ["event 1", "event 2"]  # once each
    assert lines[-2:] == ["Fine-tuned model: ft:base:org-local:s:fake",
                          'Try it: tunegate chat --url http://fake-server/v1 '
                          'ft:base:org-local:s:fake "Hello!"']
