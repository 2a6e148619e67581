"""``tunegate eval --job``: a succeeded job's validation file graded in one step, against the
real app in process (the strict SDK over Starlette's test transport) and the worker's real eval
stage, whose model endpoint is ``FakeModelEndpoint`` (a test double: the fine-tuned model
answers each validation question right, the base does not). The real server and model are in
tests/e2e/test_evals_sdk.py."""

from __future__ import annotations

import argparse
import io
import json
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from openai import OpenAI

from tests.api.conftest import TestKey
from tests.api.test_isolation import succeed
from tests.conftest import chat_lines
from tests.helpers import create_job, upload
from tunegate.api.service import Service
from tunegate.client.commands import EXIT_FAILED, EXIT_OK, EXIT_USAGE, Terminal, run
from tunegate.client.connection import Connection
from tunegate.graders.endpoint import EndpointModels
from tunegate.worker.eval_stage import EvalStage

LOCAL = TestKey(key="", project="default", organization="org-local")
VALIDATION = 4


class FakeModelEndpoint(EndpointModels):
    """A fine-tuned model (``ft:…``) answers with the validation answer of the question (from
    ``answers``); any other model says it does not know. Records the models asked."""

    def __init__(self, answers: Mapping[str, str]):
        super().__init__("http://fake.invalid/v1")
        self.answers = answers
        self.models: list[str] = []

    def chat(self, model: str, messages: Sequence[Mapping[str, Any]],
             **parameters: Any) -> dict[str, Any]:
        self.models.append(model)
        question = messages[-1]["content"]
        text = self.answers[question] if model.startswith("ft:") else "I do not know that."
        return {"choices": [{"index": 0, "finish_reason": "stop", "message": {
                    "role": "assistant", "content": text}}],
                "usage": {"prompt_tokens": 9, "completion_tokens": 6, "total_tokens": 15}}


@pytest.fixture
def through_app(client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every client command talks to the in-process app through the strict SDK."""

    def to_app(self: Connection) -> OpenAI:
        return OpenAI(base_url=self.url, api_key="local", http_client=client, max_retries=0,
                      _strict_response_validation=True)

    monkeypatch.setattr(Connection, "client", to_app)


@pytest.fixture
def service(app: Any) -> Service:
    return app.state_service  # type: ignore[no-any-return]


@pytest.fixture
def worker(service: Service) -> Iterator[FakeModelEndpoint]:
    """The eval stage in a thread, running each queued run as a worker would."""
    validation = [json.loads(line) for line in chat_lines(VALIDATION, start=50).splitlines()]
    endpoint = FakeModelEndpoint({row["messages"][0]["content"]: row["messages"][1]["content"]
                                  for row in validation})
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            claimed = service.store.evals.claim_run("w", time.time())
            if claimed is None:
                time.sleep(0.05)
                continue
            EvalStage(service, "w", endpoint).run(claimed)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    yield endpoint
    stop.set()
    thread.join(10)


def command(**flags: Any) -> tuple[int, str, str]:
    terminal = Terminal(out=io.StringIO(), err=io.StringIO())
    options = {"url": "http://testserver", "eval_id": None, "model": None, "file": None,
               "job": None, "metric": None, "pass_threshold": None, "grader": None,
               "prompt": None, "item_reference": None, "max_tokens": 32, **flags}
    code = run(argparse.Namespace(command="eval", **options), terminal)
    return code, terminal.out.getvalue(), terminal.err.getvalue()


def succeeded_job(client: Any, service: Service, tmp_path: Path, *,
                  validation: bool = True) -> tuple[str, str]:
    training = upload(client)
    fields = {"validation_file": upload(client, chat_lines(VALIDATION, start=50),
                                        name="valid.jsonl")} if validation else {}
    job_id = create_job(client, training, suffix="m", **fields)["id"]
    model, _, _ = succeed(service, job_id, LOCAL, tmp_path / "job")
    return job_id, model


def test_a_jobs_validation_file_is_graded_on_the_model_and_its_base(
        client: Any, service: Service, tmp_path: Path, through_app: None,
        worker: FakeModelEndpoint) -> None:
    job_id, model = succeeded_job(client, service, tmp_path)
    code, out, err = command(job=job_id)
    assert code == EXIT_OK, err + out
    [evaluation] = client.get("/v1/evals").json()["data"]
    assert evaluation["metadata"]["fine_tuning_job"] == job_id
    [criterion] = evaluation["testing_criteria"]
    assert (criterion["type"], criterion["evaluation_metric"], criterion["pass_threshold"]) == (
        "text_similarity", "rouge_l", 0.6)
    runs = client.get(f"/v1/evals/{evaluation['id']}/runs").json()["data"]
    assert [r["model"] for r in runs] == [model, "SmolLM2-135M-Instruct"]
    assert [r["result_counts"]["passed"] for r in runs] == [VALIDATION, 0]
    assert all(r["status"] == "completed" for r in runs)
    # Each item is the example's prompt, answered, with its answer as the reference.
    items = client.get(f"/v1/evals/{evaluation['id']}/runs/{runs[0]['id']}/output_items").json()
    [first] = [item for item in items["data"] if item["datasource_item_id"] == 0]
    assert first["datasource_item"] == {
        "messages": [{"role": "user", "content": "What is 50 plus 50?"}],
        "answer": "50 plus 50 is 100."}
    assert first["sample"]["output"][0]["content"] == "50 plus 50 is 100."
    assert sorted(set(worker.models)) == sorted({model, "SmolLM2-135M-Instruct"})
    assert f"fine-tuned: {model} (completed)" in out
    assert f"items passed: fine-tuned {VALIDATION}/{VALIDATION}, base 0/{VALIDATION}" in out
    assert "rouge_l against the validation answer" in out


def test_a_grader_of_ones_own_replaces_the_default(
        client: Any, service: Service, tmp_path: Path, through_app: None,
        worker: FakeModelEndpoint) -> None:
    job_id, _ = succeeded_job(client, service, tmp_path)
    grader = {"type": "string_check", "name": "says it", "input": "{{ sample.output_text }}",
              "reference": "{{ item.answer }}", "operation": "eq"}
    code, out, err = command(job=job_id, grader=json.dumps(grader))
    assert code == EXIT_OK, err + out
    [evaluation] = client.get("/v1/evals").json()["data"]
    assert evaluation["testing_criteria"][0]["type"] == "string_check"
    assert "says it" in out


def test_a_job_without_a_validation_file_is_refused_saying_why(
        client: Any, service: Service, tmp_path: Path, through_app: None) -> None:
    job_id, _ = succeeded_job(client, service, tmp_path, validation=False)
    code, _, err = command(job=job_id)
    assert code == EXIT_FAILED
    assert "has no validation file" in err
    assert client.get("/v1/evals").json()["data"] == []


def test_a_job_that_has_not_succeeded_is_refused(client: Any, through_app: None) -> None:
    job_id = create_job(client, upload(client))["id"]
    code, _, err = command(job=job_id)
    assert code == EXIT_FAILED and "only a succeeded job" in err


def test_job_and_eval_arguments_do_not_mix(through_app: None) -> None:
    code, _, err = command(job="ftjob-x", eval_id="eval_x")
    assert code == EXIT_USAGE and "--job" in err
    code, _, err = command()
    assert code == EXIT_USAGE and "--job JOB_ID" in err
