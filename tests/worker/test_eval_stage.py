"""The worker's eval stage with a scripted endpoint in place of the HTTP one (``FakeEndpoint``,
an ``EndpointModels`` whose chat answers from a table and counts the calls in flight): samples
are asked for several at once, every row is graded and recorded once, a resumed run grades only
what is missing, a cancel stops it, and a dead worker's run is taken over. The real endpoint
(tunegate's own chat completions on the embedded model) is in tests/e2e/test_evals_sdk.py."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import pytest

from tunegate.api.app import build_service
from tunegate.api.service import Service
from tunegate.domain.evals import RunStatus
from tunegate.graders.endpoint import EndpointModels, ModelCallFailed
from tunegate.settings import Settings
from tunegate.worker.eval_stage import EvalStage
from tunegate.worker.loop import Worker

MODEL = "SmolLM2-135M-Instruct"
CRITERION = {"type": "string_check", "name": "exact", "input": "{{ sample.output_text }}",
             "reference": "{{ item.answer }}", "operation": "eq"}


class FakeEndpoint(EndpointModels):
    """Answers ``answers[question]`` after ``delay`` seconds; records the most calls that were
    in flight at once, and every question asked."""

    def __init__(self, answers: Mapping[str, str], delay: float = 0.05,
                 fail: frozenset[str] = frozenset()):
        super().__init__("http://fake.invalid/v1")
        self.answers, self.delay, self.fail = answers, delay, fail
        self.asked: list[str] = []
        self.in_flight = self.most_in_flight = 0
        self.lock = threading.Lock()

    def chat(self, model: str, messages: Sequence[Mapping[str, Any]],
             **parameters: Any) -> dict[str, Any]:
        question = messages[-1]["content"]
        with self.lock:
            self.asked.append(question)
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        time.sleep(self.delay)
        with self.lock:
            self.in_flight -= 1
        if question in self.fail:
            raise ModelCallFailed("model_error_500", "scripted failure")
        return {"choices": [{"index": 0, "finish_reason": "stop", "message": {
                    "role": "assistant", "content": self.answers[question]}}],
                "usage": {"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12}}


@pytest.fixture
def service(settings: Settings) -> Service:
    return build_service(settings)


def start_run(service: Service, rows: int) -> tuple[str, str]:
    evaluation = service.evals.create("default", {
        "data_source_config": {"type": "custom", "item_schema": {"type": "object"}},
        "testing_criteria": [CRITERION]})
    content = [{"item": {"question": f"q{i}", "answer": str(i)}} for i in range(rows)]
    run = service.eval_runs.create("default", evaluation.id, {"data_source": {
        "type": "completions", "model": MODEL,
        "source": {"type": "file_content", "content": content},
        "input_messages": {"type": "template", "template": [
            {"role": "system", "content": "Answer with a number."},
            {"role": "user", "content": "{{ item.question }}"}]},
        "sampling_params": {"max_completion_tokens": 8}}})
    return evaluation.id, run.id


def answers(rows: int, wrong: int = -1) -> dict[str, str]:
    return {f"q{i}": "x" if i == wrong else str(i) for i in range(rows)}


def run_claimed(service: Service, endpoint: FakeEndpoint, worker_id: str = "w") -> None:
    run = service.store.evals.claim_run(worker_id, time.time())
    assert run is not None
    EvalStage(service, worker_id, endpoint).run(run)


def test_a_completions_run_asks_concurrently_and_grades_every_row(service: Service) -> None:
    eval_id, run_id = start_run(service, 12)
    endpoint = FakeEndpoint(answers(12, wrong=5), fail=frozenset({"q7"}))
    run_claimed(service, endpoint)
    assert endpoint.most_in_flight == service.settings.eval_concurrency == 4
    run = service.eval_runs.get("default", eval_id, run_id).to_api()
    assert run["status"] == "completed"
    assert run["result_counts"] == {"total": 12, "passed": 10, "failed": 1, "errored": 1}
    assert run["per_model_usage"] == [{"model_name": MODEL, "invocation_count": 11,
                                       "prompt_tokens": 110, "completion_tokens": 22,
                                       "total_tokens": 132, "cached_tokens": 0}]
    [criterion] = run["per_testing_criteria_results"]
    assert (criterion["passed"], criterion["failed"]) == (10, 2)
    items = service.eval_runs.list_items("default", eval_id, run_id, after=None, limit=100,
                                         order="asc", status="fail").items
    by_row = {item.datasource_item_id: item for item in items}
    assert sorted(by_row) == [5, 7]
    assert by_row[5].sample["output"] == [{"role": "assistant", "content": "x"}]
    assert by_row[5].sample["input"][1] == {"role": "user", "content": "q5"}
    assert by_row[7].sample["error"]["code"] == "model_error_500"


# Needs about 256 MB: within OpenAI's 2 GB, beyond the 128 MB the test's settings allow.
HOARDER = {"type": "python", "name": "hoarder",
           "source": "def grade(sample, item):\n    hoard = bytearray(256 * 1024 * 1024)\n"
                     "    return 1.0 if len(hoard) else 0.0\n"}


def test_a_python_criterion_runs_within_the_memory_limit_of_the_settings(
        settings: Settings) -> None:
    limited = build_service(replace(settings, python_grader_memory_mb=128))
    evaluation = limited.evals.create("default", {
        "data_source_config": {"type": "custom", "item_schema": {"type": "object"}},
        "testing_criteria": [HOARDER]})
    content = [{"item": {"n": i}, "sample": {"output_text": str(i)}} for i in range(2)]
    run = limited.eval_runs.create("default", evaluation.id, {"data_source": {
        "type": "jsonl", "source": {"type": "file_content", "content": content}}})
    run_claimed(limited, FakeEndpoint({}))
    done = limited.eval_runs.get("default", evaluation.id, run.id).to_api()
    assert done["result_counts"] == {"total": 2, "passed": 0, "failed": 0, "errored": 2}
    [item, _] = limited.eval_runs.list_items("default", evaluation.id, run.id, after=None,
                                             limit=10, order="asc", status=None).items
    assert "MemoryError" in json.dumps(item.results)


def test_a_resumed_run_grades_only_the_rows_left(service: Service) -> None:
    eval_id, run_id = start_run(service, 6)
    first = FakeEndpoint(answers(6))
    run = service.store.evals.claim_run("dead", time.time())
    assert run is not None
    stage = EvalStage(service, "dead", first)
    # Record three rows as the dead worker, then let it go, as the reaper does.
    for index in range(3):
        item = stage._output_item(run, stage._prepare(run)[0], index,
                                  run.data_source["source"]["content"][index])
        assert service.store.evals.record_item(item, "dead")
    assert service.store.evals.disown_run(run_id, "dead")
    second = FakeEndpoint(answers(6))
    run_claimed(service, second, "alive")
    assert sorted(second.asked) == ["q3", "q4", "q5"]
    done = service.eval_runs.get("default", eval_id, run_id)
    assert done.status is RunStatus.COMPLETED and done.totals.total == 6
    assert service.store.evals.recorded_rows(run_id) == set(range(6))


def test_a_cancel_stops_the_run_at_its_next_item(service: Service) -> None:
    eval_id, run_id = start_run(service, 40)
    endpoint = FakeEndpoint(answers(40), delay=0.05)
    run = service.store.evals.claim_run("w", time.time())
    assert run is not None
    stage = threading.Thread(target=EvalStage(service, "w", endpoint).run, args=(run,))
    stage.start()
    while service.store.evals.recorded_rows(run_id) == set():
        time.sleep(0.01)
    service.eval_runs.cancel("default", eval_id, run_id)
    stage.join(timeout=30)
    assert not stage.is_alive()
    canceled = service.eval_runs.get("default", eval_id, run_id)
    assert canceled.status is RunStatus.CANCELED
    assert 0 < canceled.totals.total < 40
    assert len(endpoint.asked) < 40


def test_a_deleted_eval_fails_its_run(service: Service) -> None:
    eval_id, run_id = start_run(service, 2)
    run = service.store.evals.claim_run("w", time.time())
    assert run is not None
    service.store.evals.delete_eval(None, eval_id)
    EvalStage(service, "w", FakeEndpoint(answers(2))).run(run)
    assert service.store.evals.get_run(None, None, run_id) is None


def test_the_worker_takes_over_a_run_whose_worker_stopped_beating(service: Service) -> None:
    _, run_id = start_run(service, 2)
    assert service.store.evals.claim_run("host:unknown:1:gone", time.time() - 3600) is not None
    worker = Worker(service, worker_id="alive")
    assert worker.reap_stale_runs() == 1
    owned = service.store.evals.get_run(None, None, run_id)
    assert owned is not None and owned.worker_id is None
    assert owned.status is RunStatus.IN_PROGRESS  # resumed by the next claim


def test_the_worker_loop_runs_a_queued_run_to_its_end(service: Service) -> None:
    eval_id, run_id = start_run(service, 3)
    endpoint = FakeEndpoint(answers(3))
    worker = Worker(service, worker_id="loop", eval_models=endpoint)
    assert worker.evaluate_next()
    done = service.eval_runs.get("default", eval_id, run_id)
    assert done.status is RunStatus.COMPLETED and done.totals.passed == 3
    assert done.worker_id is None  # given up
    assert not worker.evaluate_next()  # nothing left to run
