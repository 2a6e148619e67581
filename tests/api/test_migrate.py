"""``tunegate migrate`` moving into a real tunegate app (in process: real SQLite, the spec's
response validation, the official SDK in strict mode through the app's test client) from
``FakeSource``, a small fake of OpenAI's fine-tuning API on an httpx mock transport that can
answer 429 (with Retry-After), 500, 401 or 404 on demand. Source-to-target with a real
training run and a real second server: tests/e2e/test_migrate_e2e.py."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from openai import OpenAI

from tests.conftest import chat_lines
from tunegate.client.migrate import Choices, run_migration
from tunegate.client.migration_state import MigrationState
from tunegate.ids import FORMER_MODEL_KEY, SOURCE_JOB_KEY

SOURCE_URL = "https://fake-openai.test/v1"
TARGET_URL = "http://testserver/v1"
OLD_MODEL = "ft:gpt-4o-mini-2024-07-18:acme:support:AbC123"
TRAIN = chat_lines(12)
VALID = chat_lines(4, start=50)
METHOD = {"type": "supervised", "supervised": {"hyperparameters": {
    "n_epochs": 2, "batch_size": 1, "learning_rate_multiplier": 1.5}}}


def source_job(job_id: str, training: str, *, status: str = "succeeded",
               model: str = "gpt-4o-mini-2024-07-18", validation: str | None = None,
               fine_tuned: str | None = OLD_MODEL) -> dict[str, Any]:
    return {"id": job_id, "object": "fine_tuning.job", "created_at": 1_700_000_000,
            "error": None, "fine_tuned_model": fine_tuned if status == "succeeded" else None,
            "finished_at": 1_700_000_500, "hyperparameters": METHOD["supervised"][
                "hyperparameters"], "model": model, "organization_id": "org-acme",
            "result_files": ["file-results1"] if status == "succeeded" else [],
            "seed": 7, "status": status, "trained_tokens": 100, "training_file": training,
            "validation_file": validation, "method": METHOD, "metadata": {"team": "support"}}


class FakeSource:
    """A fake OpenAI: two files, a succeeded job with a validation file, a failed one, and a
    queue of forced answers (``fail``) served before the real one of a path."""

    def __init__(self) -> None:
        self.files = {"file-train1": ("support-train.jsonl", TRAIN),
                      "file-valid1": ("support-valid.jsonl", VALID),
                      "file-results1": ("step_metrics.csv", b"step,train_loss\n1,0.5\n")}
        self.jobs = [source_job("ftjob-failed1", "file-train1", status="failed"),
                     source_job("ftjob-good1", "file-train1", validation="file-valid1")]
        self.forced: list[tuple[str, httpx.Response]] = []
        self.requests: list[tuple[str, float]] = []
        self.keys: set[str] = set()
        self.asked: list[str] = []

    def fail(self, path_pattern: str, response: httpx.Response, times: int = 1) -> None:
        self.forced += [(path_pattern, response)] * times

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path.removeprefix("/v1")
        self.requests.append((path, time.monotonic()))
        self.keys.add(request.headers.get("authorization", ""))
        for index, (pattern, response) in enumerate(self.forced):
            if re.fullmatch(pattern, path):
                del self.forced[index]
                return response
        if path == "/chat/completions":
            return self.chat(json.loads(request.content))
        return self.answer(path)

    def answer(self, path: str) -> httpx.Response:
        if path == "/fine_tuning/jobs":  # newest first, as OpenAI lists them
            return httpx.Response(200, json={"object": "list", "has_more": False,
                                             "data": list(reversed(self.jobs))})
        if match := re.fullmatch(r"/fine_tuning/jobs/([^/]+)/checkpoints", path):
            return httpx.Response(200, json={"object": "list", "has_more": False, "data": [
                {"id": "ftckpt_1", "object": "fine_tuning.job.checkpoint", "created_at": 1,
                 "fine_tuned_model_checkpoint": OLD_MODEL + ":ckpt-step-10", "step_number": 10,
                 "metrics": {}, "fine_tuning_job_id": match[1]}]})
        if match := re.fullmatch(r"/models/(.+)", path):
            return httpx.Response(200, json={"id": match[1], "object": "model", "created": 1,
                                             "owned_by": "system",
                                             "shutdown_date": "2027-01-14"})
        if match := re.fullmatch(r"/files/([^/]+)(/content)?", path):
            if match[1] not in self.files:
                return error(404, f"No such File object: {match[1]}")
            name, content = self.files[match[1]]
            if match[2]:
                return httpx.Response(200, content=content)
            return httpx.Response(200, json={"id": match[1], "object": "file", "bytes": len(
                content), "created_at": 1, "filename": name, "purpose": "fine-tune"})
        return error(404, f"no route {path}")

    def chat(self, body: dict[str, Any]) -> httpx.Response:
        question = body["messages"][-1]["content"]
        self.asked.append(question)
        return httpx.Response(200, json={
            "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": body["model"],
            "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None, "message": {
                "role": "assistant", "content": f"old answer to {question}", "refusal": None}}]})


def error(status: int, message: str, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(status, headers=headers, json={"error": {
        "message": message, "type": "invalid_request_error", "param": None, "code": None}})


@pytest.fixture
def fake_source() -> FakeSource:
    return FakeSource()


@pytest.fixture
def target(client: Any) -> OpenAI:
    return OpenAI(base_url=TARGET_URL, api_key="none", http_client=client,
                  _strict_response_validation=True)


@pytest.fixture
def migrate(fake_source: FakeSource, target: OpenAI,
            tmp_path: Path) -> Iterator[Callable[..., tuple[int, list[str], list[str]]]]:
    def run(*, mapping: dict[str, str] | None = None, retries: int = 3,
            state_file: str = "state.json", record: bool = False,
            prompts: tuple[Any, ...] = ()) -> tuple[int, list[str], list[str]]:
        source = OpenAI(base_url=SOURCE_URL, api_key="sk-fake-source-secret",
                        max_retries=retries,
                        http_client=httpx.Client(transport=httpx.MockTransport(fake_source)))
        state = MigrationState.load(tmp_path / state_file, SOURCE_URL, TARGET_URL)
        out: list[str] = []
        err: list[str] = []
        code = run_migration(source, target, state, Choices(mapping or {}, yes=True, record=record,
                                                            prompts=prompts),
                             out.append, err.append, lambda _question: False)
        return code, out, err
    yield run


def target_files(target: OpenAI) -> list[Any]:
    return list(target.files.list(purpose="fine-tune"))


def test_files_and_job_move_with_their_settings(migrate: Any, target: OpenAI,
                                                tmp_path: Path) -> None:
    code, out, err = migrate()
    assert (code, err) == (0, [])
    files = {f.filename: f for f in target_files(target)}
    assert set(files) == {"support-train.jsonl", "support-valid.jsonl"}
    assert target.files.content(files["support-train.jsonl"].id).read() == TRAIN
    [job] = list(target.fine_tuning.jobs.list())
    assert job.model == "gpt-4o-mini-2024-07-18"  # the target's alias table decides
    assert (job.training_file, job.validation_file) == (files["support-train.jsonl"].id,
                                                       files["support-valid.jsonl"].id)
    assert job.seed == 7
    assert job.metadata == {"team": "support", SOURCE_JOB_KEY: "ftjob-good1",
                            FORMER_MODEL_KEY: OLD_MODEL}
    assert job.method is not None and job.method.supervised is not None
    hyper = job.method.supervised.hyperparameters
    assert (hyper.n_epochs, hyper.batch_size, hyper.learning_rate_multiplier) == (2, 1, 1.5)
    assert (job.model_extra or {})["user_provided_suffix"] == "support"  # from the old name
    text = "\n".join(out)
    assert "shuts down 2027-01-14" in text and "checkpoints: 1" in text
    assert re.search(r"ftjob-failed1 .* skipped", text)
    assert re.search(rf"ftjob-good1\s+{re.escape(OLD_MODEL)}\s+{job.id}\s+moved", text)
    kept = tmp_path / "state.results" / "ftjob-good1" / "file-results1.csv"
    assert kept.read_bytes().startswith(b"step,train_loss")


def test_a_mapped_base_is_trained_on(migrate: Any, target: OpenAI) -> None:
    migrate(mapping={"gpt-4o-mini-2024-07-18": "SmolLM2-135M-Instruct"})
    [job] = list(target.fine_tuning.jobs.list())
    assert job.model == "SmolLM2-135M-Instruct"


def test_a_second_run_copies_nothing(migrate: Any, target: OpenAI, tmp_path: Path) -> None:
    migrate()
    code, out, _ = migrate()
    assert code == 0
    assert len(target_files(target)) == 2
    assert len(list(target.fine_tuning.jobs.list())) == 1
    assert "created by an earlier run" in "\n".join(out)


def test_a_lost_state_file_finds_the_copies_on_the_target(migrate: Any, target: OpenAI,
                                                          tmp_path: Path) -> None:
    """As after a kill between an upload (or a job's creation) and the state's write."""
    migrate()
    (tmp_path / "state.json").unlink()
    code, out, _ = migrate()
    assert code == 0
    assert len(target_files(target)) == 2
    assert len(list(target.fine_tuning.jobs.list())) == 1


def test_files_recorded_but_no_job_yet_are_not_copied_again(
        migrate: Any, fake_source: FakeSource, target: OpenAI, tmp_path: Path) -> None:
    """A kill after the files were copied and before the job was made."""
    migrate()
    job = next(iter(target.fine_tuning.jobs.list()))
    target.fine_tuning.jobs.cancel(job.id)
    state = json.loads((tmp_path / "state.json").read_text())
    state["jobs"] = {}
    (tmp_path / "state.json").write_text(json.dumps(state))
    # Without the state's job and with its metadata found on the target: nothing new.
    code, _, _ = migrate()
    assert code == 0 and len(target_files(target)) == 2
    assert len(list(target.fine_tuning.jobs.list())) == 1


def test_429_waits_as_retry_after_says_and_500_is_retried(migrate: Any,
                                                          fake_source: FakeSource,
                                                          target: OpenAI) -> None:
    fake_source.fail("/fine_tuning/jobs", error(429, "slow down", {"retry-after": "2"}))
    fake_source.fail(r"/files/file-train1/content", error(500, "try again"), times=2)
    code, _, err = migrate()
    assert (code, err) == (0, [])
    lists = [at for path, at in fake_source.requests if path == "/fine_tuning/jobs"]
    assert len(lists) == 2 and lists[1] - lists[0] >= 2.0  # Retry-After: 2 honoured
    assert sum(path == "/files/file-train1/content" for path, _ in fake_source.requests) == 3
    assert len(target_files(target)) == 2


def test_a_file_the_source_will_not_serve_fails_its_job_and_the_rest_goes_on(
        migrate: Any, fake_source: FakeSource, target: OpenAI) -> None:
    fake_source.files["file-train2"] = ("other.jsonl", chat_lines(10, start=100))
    fake_source.jobs.insert(0, source_job("ftjob-lost1", "file-gone", fine_tuned="ft:x:y:z:w"))
    fake_source.jobs.append(source_job("ftjob-good2", "file-train2",
                                       fine_tuned="ft:gpt-4o-mini-2024-07-18:acme::Zz9"))
    code, out, err = migrate()
    assert code == 1
    assert err == ["error: file file-gone: the source did not serve it: No such File object: "
                   "file-gone (HTTP 404)"]
    assert len(list(target.fine_tuning.jobs.list())) == 2
    assert re.search(r"ftjob-lost1 .* failed\s+file file-gone", "\n".join(out))


def test_a_base_the_target_refuses_is_named_and_the_rest_goes_on(
        migrate: Any, fake_source: FakeSource, target: OpenAI) -> None:
    fake_source.jobs.insert(0, source_job("ftjob-odd1", "file-train1", model="my-own-base"))
    code, _, err = migrate()
    assert code == 1
    [line] = err
    assert line.startswith("error: job ftjob-odd1: the target refused it (base my-own-base is "
                           "not in --map, so the target's alias table decides): Model "
                           "my-own-base is not available")
    assert len(list(target.fine_tuning.jobs.list())) == 1


def test_a_wrong_key_stops_at_the_inventory_and_is_not_shown(migrate: Any,
                                                             fake_source: FakeSource,
                                                             target: OpenAI) -> None:
    fake_source.fail("/fine_tuning/jobs", error(401, "Incorrect API key provided."))
    code, out, err = migrate()
    assert code == 1
    assert err == [f"error: cannot read the jobs of the source {SOURCE_URL}: Incorrect API key "
                   "provided. (HTTP 401)"]
    assert "sk-fake-source-secret" not in "\n".join(out + err)
    assert target_files(target) == []


def test_an_unreachable_source_says_so(target: OpenAI, tmp_path: Path) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    source = OpenAI(base_url=SOURCE_URL, api_key="k", max_retries=0,
                    http_client=httpx.Client(transport=httpx.MockTransport(refuse)))
    err: list[str] = []
    code = run_migration(source, target, MigrationState.load(tmp_path / "s.json", SOURCE_URL,
                                                             TARGET_URL),
                         Choices({}, yes=True), lambda _: None, err.append, lambda _: False)
    assert code == 1
    assert err == [f"error: cannot read the jobs of the source {SOURCE_URL}: cannot connect "
                   "(connection refused)"]


def test_the_state_file_holds_no_key(migrate: Any, fake_source: FakeSource,
                                     tmp_path: Path) -> None:
    migrate()
    assert fake_source.keys == {"Bearer sk-fake-source-secret"}
    text = (tmp_path / "state.json").read_text()
    assert "sk-fake" not in text
    assert json.loads(text)["jobs"]["ftjob-good1"]["former_model"] == OLD_MODEL

EVALS_WARNING = pytest.mark.filterwarnings("ignore:The Evals API is deprecated")


@EVALS_WARNING
def test_recorded_answers_become_an_eval_and_a_training_file(
        migrate: Any, fake_source: FakeSource, target: OpenAI, tmp_path: Path) -> None:
    extra = ({"role": "user", "content": "Anything else?"},)
    code, out, err = migrate(record=True, prompts=(list(extra),))
    assert (code, err) == (0, [])
    assert len(fake_source.asked) == 5  # 4 validation prompts and the extra one
    [evaluation] = list(target.evals.list())
    assert evaluation.metadata == {FORMER_MODEL_KEY: OLD_MODEL}
    [run] = list(target.evals.runs.list(evaluation.id))
    assert run.data_source.type == "jsonl"
    folder = tmp_path / "state.results" / "ftjob-good1"
    items = [json.loads(line) for line in (folder / "items.jsonl").read_text().splitlines()]
    first = items[0]["item"]
    assert first["messages"][-1]["role"] == "user"  # the old assistant turn is the answer now
    assert first["reference"] == f"old answer to {first['messages'][-1]['content']}"
    distill = [json.loads(line) for line in (folder / "distill.jsonl").read_text().splitlines()]
    assert distill[0]["messages"][-1] == {"role": "assistant", "content": first["reference"]}
    assert f"answers in eval {evaluation.id}" in "\n".join(out)
    # Again: nothing asked, no second eval.
    assert migrate(record=True, prompts=(list(extra),))[0] == 0
    assert len(fake_source.asked) == 5 and len(list(target.evals.list())) == 1


@EVALS_WARNING
def test_an_interrupted_recording_asks_only_what_is_missing(
        migrate: Any, fake_source: FakeSource, target: OpenAI) -> None:
    calls = {"n": 0}
    original = fake_source.chat

    def failing_third(body: dict[str, Any]) -> httpx.Response:
        calls["n"] += 1
        if calls["n"] == 3:
            return error(503, "overloaded")
        return original(body)

    fake_source.chat = failing_third  # type: ignore[method-assign]
    code, out, err = migrate(record=True, retries=0)
    assert code == 1
    assert err == [f"error: model {OLD_MODEL}: the source did not answer prompt 3: overloaded "
                   "(HTTP 503)"]
    assert list(target.evals.list()) == []
    assert re.search(r"ftjob-good1 .* failed .*not recorded", "\n".join(out))
    code, _, err = migrate(record=True, retries=0)
    assert (code, err) == (0, [])
    assert len(fake_source.asked) == 4  # 2 before, then the last 2: none asked twice
    assert len(list(target.evals.list())) == 1


@pytest.mark.parametrize(("argv", "message"), [
    (["--map", "gpt-4o-mini"], "tunegate migrate: --map takes BASE=LOCAL, got 'gpt-4o-mini'"),
    ([], "tunegate migrate: give the source's key (--key or OPENAI_API_KEY)"),
    (["--key", "k", "--prompts", "/nonexistent.jsonl"],
     "tunegate migrate: no such file: /nonexistent.jsonl"),
])
def test_a_bad_command_line_says_what_is_wrong(argv: list[str], message: str,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    from tunegate.cli import _parser
    from tunegate.client.commands import Terminal, run

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    terminal = Terminal(out=io.StringIO(), err=io.StringIO(), stdin=io.StringIO())
    assert run(_parser().parse_args(["migrate", *argv]), terminal) == 2
    assert terminal.err.getvalue() == message + "\n"


def test_without_yes_and_no_terminal_nothing_moves(fake_source: FakeSource, target: OpenAI,
                                                   tmp_path: Path) -> None:
    source = OpenAI(base_url=SOURCE_URL, api_key="k",
                    http_client=httpx.Client(transport=httpx.MockTransport(fake_source)))
    err: list[str] = []
    asked: list[str] = []
    code = run_migration(source, target, MigrationState.load(tmp_path / "s.json", SOURCE_URL,
                                                             TARGET_URL),
                         Choices({}), lambda _: None, err.append,
                         lambda question: asked.append(question) or False)
    assert code == 1 and asked == [f"Move 1 job(s) into {TARGET_URL}?"]
    assert err == ["nothing moved (add --yes to answer yes in a script)"]
    assert target_files(target) == []


def test_a_dry_run_moves_nothing(fake_source: FakeSource, target: OpenAI, tmp_path: Path) -> None:
    source = OpenAI(base_url=SOURCE_URL, api_key="k",
                    http_client=httpx.Client(transport=httpx.MockTransport(fake_source)))
    out: list[str] = []
    code = run_migration(source, target, MigrationState.load(tmp_path / "s.json", SOURCE_URL,
                                                             TARGET_URL),
                         Choices({}, dry_run=True), out.append, out.append, lambda _: True)
    assert code == 0 and out[-1] == f"dry run: 1 job(s) would move into {TARGET_URL}"
    assert target_files(target) == [] and not (tmp_path / "s.json").exists()


def test_a_job_from_before_methods_keeps_its_hyperparameters(
        migrate: Any, fake_source: FakeSource, target: OpenAI) -> None:
    del fake_source.jobs[1]["method"]
    assert migrate()[0] == 0
    [job] = list(target.fine_tuning.jobs.list())
    assert job.method is not None and job.method.supervised is not None
    assert job.method.supervised.hyperparameters.n_epochs == 2


@pytest.mark.parametrize(("row", "prompt"), [
    ({"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "q"},
                   {"role": "assistant", "content": "a"}]},
     [{"role": "system", "content": "s"}, {"role": "user", "content": "q"}]),
    ({"prompt": "2+2=", "completion": "4"}, [{"role": "user", "content": "2+2="}]),
    ({"messages": [{"role": "assistant", "content": "a"}]}, None),
    ({"input": "no prompt here"}, None),
    ([1, 2], None),
])
def test_a_prompt_is_an_example_without_its_answer(row: Any, prompt: Any) -> None:
    from tunegate.client.recording import prompt_of, prompts_in

    assert prompt_of(row) == prompt
    assert prompts_in(json.dumps(row).encode() + b"\nnot json\n\n") == ([prompt] if prompt
                                                                          else [])


def test_an_unreachable_target_is_one_line(fake_source: FakeSource, tmp_path: Path) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    source = OpenAI(base_url=SOURCE_URL, api_key="k",
                    http_client=httpx.Client(transport=httpx.MockTransport(fake_source)))
    target = OpenAI(base_url=TARGET_URL, api_key="none", max_retries=0,
                    http_client=httpx.Client(transport=httpx.MockTransport(refuse)))
    err: list[str] = []
    code = run_migration(source, target, MigrationState.load(tmp_path / "s.json", SOURCE_URL,
                                                             TARGET_URL),
                         Choices({}, yes=True), lambda _: None, err.append, lambda _: False)
    assert code == 1
    assert err == [f"error: cannot use the target {TARGET_URL}: cannot connect (connection "
                   "refused)"]
