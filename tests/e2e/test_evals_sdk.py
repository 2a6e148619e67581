"""The Evals API end to end: a real ``tunegate serve`` with its embedded worker, the embedded
SmolLM2 base model answering through tunegate's own chat completions, and the official SDK as the
client, loose and strict (``_strict_response_validation=True``).

- an eval with a ``string_check`` criterion run with a ``completions`` data source: every item
  graded, real token counts, output items listed (with the status filter) and retrieved;
- a ``jsonl`` run from a file uploaded with purpose ``evals``;
- cancel and delete through the SDK;
- kill -9 of the worker in the middle of a run: the restarted worker resumes it, and each data
  item has exactly one output item.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from openai import OpenAI

from tests.e2e.test_chaos import worker_pid
from tests.servers import Server, sdk_client, start_server_afresh, stop_server

pytestmark = [pytest.mark.e2e, pytest.mark.slow,
              # SDK 3.x warns on every evals call that OpenAI shut its Evals API down.
              pytest.mark.filterwarnings("ignore:The Evals API is deprecated:DeprecationWarning")]

MODEL = "SmolLM2-135M-Instruct"
WORDS = ["banana", "orange", "river", "castle", "violin", "rocket", "garden", "pepper"]
CONFIG = {"type": "custom", "item_schema": {"type": "object", "properties": {
    "word": {"type": "string"}}}, "include_sample_schema": True}
CRITERION = {"type": "string_check", "name": "says the word",
             "input": "{{ sample.output_text }}", "reference": "{{ item.word }}",
             "operation": "ilike"}
TEMPLATE = {"type": "template", "template": [
    {"role": "system", "content": "You repeat words exactly."},
    {"role": "user", "content": "Say the word {{ item.word }} and nothing else."}]}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    started = start_server_afresh(tmp_path_factory.mktemp("evals"),
                                  env={"TUNEGATE_HEARTBEAT_TIMEOUT": "10"})
    yield started
    stop_server(started)


@pytest.fixture(scope="module")
def loose(server: Server) -> Iterator[OpenAI]:
    with sdk_client(server, max_retries=0) as client:
        yield client


@pytest.fixture(scope="module")
def strict(server: Server) -> Iterator[OpenAI]:
    with sdk_client(server, max_retries=0, _strict_response_validation=True) as client:
        yield client


def completions_source(words: list[str], tokens: int = 8) -> dict[str, Any]:
    return {"type": "completions", "model": MODEL,
            "source": {"type": "file_content",
                       "content": [{"item": {"word": word}} for word in words]},
            "input_messages": TEMPLATE,
            "sampling_params": {"temperature": 0, "max_completion_tokens": tokens, "seed": 1}}


def wait_for(client: OpenAI, eval_id: str, run_id: str, statuses: set[str],
             seconds: float = 300) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        run = client.evals.runs.retrieve(run_id, eval_id=eval_id)
        if run.status in statuses:
            return run
        time.sleep(0.5)
    raise AssertionError(f"run {run_id} still {run.status} after {seconds} s")


def all_items(client: OpenAI, eval_id: str, run_id: str, **filters: Any) -> list[Any]:
    return list(client.evals.runs.output_items.list(run_id, eval_id=eval_id, limit=3,
                                                    **filters))


def test_a_completions_run_on_the_embedded_model(loose: OpenAI, strict: OpenAI) -> None:
    evaluation = strict.evals.create(name="repeat", data_source_config=CONFIG,  # type: ignore[arg-type]
                                     testing_criteria=[CRITERION])  # type: ignore[list-item]
    [criterion] = evaluation.testing_criteria
    criterion_id = criterion.id  # type: ignore[union-attr]  # an extra key of ours
    run = strict.evals.runs.create(evaluation.id, name="base",
                                   data_source=completions_source(WORDS))  # type: ignore[arg-type]
    assert run.status == "queued" and run.model == MODEL
    done = wait_for(strict, evaluation.id, run.id, {"completed", "failed"})
    assert done.status == "completed", done.error
    assert done.result_counts.total == len(WORDS) and done.result_counts.errored == 0
    assert done.result_counts.passed >= 1  # the model repeats most words; the grading is real
    [usage] = done.per_model_usage
    assert usage.run_model_name == MODEL and usage.invocation_count == len(WORDS)
    assert usage.prompt_tokens > 10 * len(WORDS) and 0 < usage.completion_tokens <= 8 * len(WORDS)
    [counted] = done.per_testing_criteria_results
    assert counted.testing_criteria == criterion_id
    assert counted.passed == done.result_counts.passed
    items = all_items(strict, evaluation.id, run.id)  # three to a page: the cursor is used
    assert sorted(item.datasource_item_id for item in items) == list(range(len(WORDS)))
    passing = all_items(loose, evaluation.id, run.id, status="pass")
    assert len(passing) == done.result_counts.passed
    assert all(item.status == "pass" for item in passing)
    first = strict.evals.runs.output_items.retrieve(items[0].id, eval_id=evaluation.id,
                                                   run_id=run.id)
    word = WORDS[first.datasource_item_id]
    assert first.datasource_item == {"word": word}
    assert first.sample.input[-1].content == f"Say the word {word} and nothing else."
    assert first.sample.model == MODEL and first.sample.usage.completion_tokens > 0
    [result] = first.results
    assert result.name == criterion_id
    assert result.passed == (word in (first.sample.output[0].content or "").lower())
    assert [r.id for r in strict.evals.runs.list(evaluation.id)] == [run.id]
    assert [e.id for e in strict.evals.list()][-1] == evaluation.id


def test_a_jsonl_run_from_an_evals_file(loose: OpenAI, strict: OpenAI) -> None:
    rows = [{"item": {"word": "a"}, "sample": {"output_text": "a b"}},
            {"item": {"word": "z"}, "sample": {"output_text": "a b"}}]
    lines = "\n".join(json.dumps(row) for row in rows).encode()
    uploaded = strict.files.create(file=("rows.jsonl", lines), purpose="evals")
    assert uploaded.purpose == "user_data"
    evaluation = strict.evals.create(data_source_config=CONFIG,  # type: ignore[arg-type]
                                     testing_criteria=[CRITERION])  # type: ignore[list-item]
    run = strict.evals.runs.create(evaluation.id, data_source={  # type: ignore[arg-type]
        "type": "jsonl", "source": {"type": "file_id", "id": uploaded.id}})
    done = wait_for(strict, evaluation.id, run.id, {"completed", "failed"})
    assert done.status == "completed" and done.model == "jsonl"
    assert (done.result_counts.passed, done.result_counts.failed) == (1, 1)
    assert done.per_model_usage == []  # nothing was generated
    failing = all_items(strict, evaluation.id, run.id, status="fail")
    assert [item.datasource_item for item in failing] == [{"word": "z"}]


def test_cancel_and_delete_through_the_sdk(loose: OpenAI, strict: OpenAI) -> None:
    evaluation = strict.evals.create(data_source_config=CONFIG,  # type: ignore[arg-type]
                                     testing_criteria=[CRITERION])  # type: ignore[list-item]
    run = strict.evals.runs.create(evaluation.id, data_source=completions_source(  # type: ignore[arg-type]
        WORDS * 8, tokens=32))
    canceled = strict.evals.runs.cancel(run.id, eval_id=evaluation.id)
    assert canceled.status == "canceled"
    time.sleep(2)
    settled = strict.evals.runs.retrieve(run.id, eval_id=evaluation.id)
    assert settled.status == "canceled" and settled.result_counts.total < len(WORDS) * 8
    assert strict.evals.runs.delete(run.id, eval_id=evaluation.id).deleted
    assert strict.evals.delete(evaluation.id).deleted
    assert evaluation.id not in [e.id for e in strict.evals.list()]


def test_kill_9_of_the_worker_mid_run_grades_each_item_once(server: Server,
                                                           strict: OpenAI) -> None:
    words = [f"{word}{index}" for index in range(3) for word in WORDS]
    evaluation = strict.evals.create(data_source_config=CONFIG,  # type: ignore[arg-type]
                                     testing_criteria=[CRITERION])  # type: ignore[list-item]
    run = strict.evals.runs.create(evaluation.id, data_source=completions_source(  # type: ignore[arg-type]
        words, tokens=24))
    deadline = time.monotonic() + 300
    while strict.evals.runs.retrieve(run.id, eval_id=evaluation.id).result_counts.total < 2:
        assert time.monotonic() < deadline, "no item was graded"
        time.sleep(0.2)
    os.kill(worker_pid(server), signal.SIGKILL)
    middle = strict.evals.runs.retrieve(run.id, eval_id=evaluation.id)
    assert middle.status == "in_progress" and middle.result_counts.total < len(words)
    done = wait_for(strict, evaluation.id, run.id, {"completed", "failed"}, seconds=600)
    assert done.status == "completed", done.error
    assert done.result_counts.total == len(words)
    items = all_items(strict, evaluation.id, run.id)
    assert sorted(item.datasource_item_id for item in items) == list(range(len(words)))
    [counted] = done.per_testing_criteria_results
    assert counted.passed + counted.failed == len(words)
    assert "worker" in Path(server.log_path).read_text(errors="replace")


def test_the_eval_command_prints_the_criteria_table(server: Server, strict: OpenAI,
                                                    tmp_path: Path) -> None:
    evaluation = strict.evals.create(data_source_config=CONFIG,  # type: ignore[arg-type]
                                     testing_criteria=[CRITERION])  # type: ignore[list-item]
    data = tmp_path / "words.jsonl"
    data.write_text("".join(json.dumps({"item": {"word": word}}) + "\n" for word in WORDS[:3]))
    done = subprocess.run(
        [sys.executable, "-m", "tunegate", "eval", evaluation.id, "--model", MODEL,
         "--file", str(data), "--prompt", "Say the word {{ item.word }} and nothing else.",
         "--max-tokens", "8", "--url", server.api],
        capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[1] == "completed: 3 items"
    assert lines[2].split() == ["criterion", "passed", "failed", "pass", "rate"]
    assert lines[3].startswith("says the word ")
    assert lines[4].startswith("all criteria")
