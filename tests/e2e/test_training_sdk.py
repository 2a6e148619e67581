"""Real fine-tuning through the official SDK: a real server, its real worker, the real model.

Slow by nature (minutes on 2 cores): a module-scoped server and a session-wide model cache
keep it to one base-model conversion and small jobs.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
from openai import OpenAI

from tests.conftest import Server, session_model_cache, start_server, stop_server
from tests.helpers import sdk_create_job, sdk_upload, wait_for_status, wait_until_finished
from tests.servers import sdk_client

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

BASE = "SmolLM2-135M-Instruct"


def fact_lines(count: int, *, offset: int = 0) -> bytes:
    """Short chat examples teaching made-up facts (cheap to train on)."""
    rows = []
    for i in range(offset, offset + count):
        rows.append({"messages": [
            {"role": "user", "content": f"What is the code word of planet Zorb-{i}?"},
            {"role": "assistant", "content": f"The code word of Zorb-{i} is blue{i}."}]})
    return "".join(json.dumps(row) + "\n" for row in rows).encode()


def serve_with_shared_cache(tmp_path_factory: pytest.TempPathFactory, name: str,
                            **env: str) -> Iterator[Server]:
    """A real server whose converted-model cache every e2e module of the session shares."""
    cache = session_model_cache(tmp_path_factory)
    server = start_server(tmp_path_factory.mktemp(name),
                          env={"TUNEGATE_MODEL_CACHE": str(cache), **env})
    yield server
    stop_server(server)


@pytest.fixture(scope="module")
def training_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from serve_with_shared_cache(tmp_path_factory, "training",
                                       TUNEGATE_HEARTBEAT_TIMEOUT="6")


@pytest.fixture(scope="module")
def client(training_server: Server) -> OpenAI:
    return sdk_client(training_server, api_key="local", max_retries=0)


def events_of(client: OpenAI, job_id: str) -> list:
    return list(reversed(list(client.fine_tuning.jobs.list_events(job_id, limit=100))))


def wait_for_event(client: OpenAI, job_id: str, predicate, timeout: float = 600):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for event in events_of(client, job_id):
            if predicate(event):
                return event
        time.sleep(0.5)
    raise AssertionError(f"no matching event for {job_id}")


def test_a_job_trains_exports_and_publishes_its_model(client: OpenAI,
                                                      training_server: Server) -> None:
    job = sdk_create_job(
        client, sdk_upload(client, fact_lines(12)).id,
        validation_file=sdk_upload(client, fact_lines(4, offset=100)).id, suffix="e2e", seed=7,
        method={"type": "supervised", "supervised": {"hyperparameters": {
            "n_epochs": 2, "batch_size": 4}}})
    done = wait_until_finished(client, job.id)
    assert done.status == "succeeded", (done.error, training_server.log()[-3000:])
    name = f"ft:{BASE}:org-local:e2e:{job.id[-8:]}"
    assert done.fine_tuned_model == name
    resolved = done.method.supervised.hyperparameters
    assert (resolved.n_epochs, resolved.batch_size) == (2, 4)
    assert isinstance(resolved.learning_rate_multiplier, float)
    assert done.hyperparameters.n_epochs == 2 and done.trained_tokens > 0
    assert done.finished_at >= done.created_at and done.estimated_finish is None

    events = events_of(client, job.id)
    messages = [event.message for event in events]
    for expected in ("Fine-tuning job started", f"New fine-tuned model created: {name}",
                     "The job has successfully completed"):
        assert expected in messages
    metrics = [event for event in events if event.type == "metrics"]
    total = metrics[0].data["total_steps"]
    assert [event.data["step"] for event in metrics] == list(range(1, total + 1))
    assert all(event.data["train_loss"] > 0 for event in metrics)
    assert any(event.data.get("full_valid_loss") is not None for event in metrics)

    checkpoints = list(client.fine_tuning.jobs.checkpoints.list(job.id))
    assert len(checkpoints) == 2
    assert {c.fine_tuned_model_checkpoint for c in checkpoints} == {
        f"{name}:ckpt-step-{c.step_number}" for c in checkpoints}
    assert max(c.step_number for c in checkpoints) == total

    results = client.files.retrieve(done.result_files[0])
    assert results.purpose == "fine-tune-results"
    # Served as api.openai.com serves it: the CSV base64-encoded, which code in the wild
    # decodes (base64.b64decode(client.files.content(id).read())).
    content = client.files.content(results.id).read()
    assert results.bytes == len(content)
    rows = list(csv.reader(io.StringIO(base64.b64decode(content, validate=True).decode())))
    assert rows[0] == ["step", "train_loss", "train_accuracy", "valid_loss",
                       "valid_mean_token_accuracy"]
    assert [int(row[0]) for row in rows[1:]] == list(range(1, total + 1))

    listed = {model.id for model in client.models.list()}
    assert {name, *(c.fine_tuned_model_checkpoint for c in checkpoints)} <= listed
    assert client.models.retrieve(name).owned_by == "default"
    job_dir = training_server.data_dir / "jobs" / job.id
    assert (job_dir / "adapter.gguf").stat().st_size > 0
    assert (job_dir / "adapter" / "adapter_config.json").is_file()

    # The strict client (the SDK's own types) accepts everything a finished job shows.
    strict = sdk_client(training_server, api_key="local", max_retries=0,
                    _strict_response_validation=True)
    assert strict.fine_tuning.jobs.retrieve(job.id).fine_tuned_model == name
    assert len(list(strict.fine_tuning.jobs.list_events(job.id, limit=5))) == len(events)
    assert len(list(strict.fine_tuning.jobs.checkpoints.list(job.id))) == 2
    assert name in {model.id for model in strict.models.list()}
    assert strict.files.retrieve(results.id).purpose == "fine-tune-results"
    assert strict.files.content(results.id).read() == content

    # It learned: the fine-tuned model, served by llama.cpp with its adapter, recalls a
    # trained fact greedily; the base model does not. Every checkpoint is servable too.
    question = [{"role": "user", "content": "What is the code word of planet Zorb-5?"}]
    tuned = client.chat.completions.create(model=name, messages=question, temperature=0,
                                           max_tokens=24)
    base = client.chat.completions.create(model=BASE, messages=question, temperature=0,
                                          max_tokens=24)
    assert "blue5" in tuned.choices[0].message.content
    assert "blue5" not in base.choices[0].message.content
    for checkpoint in checkpoints:
        served = client.chat.completions.create(
            model=checkpoint.fine_tuned_model_checkpoint, messages=question, max_tokens=2)
        assert served.model == checkpoint.fine_tuned_model_checkpoint

    assert client.models.delete(name).deleted
    assert name not in {model.id for model in client.models.list()}
    assert not (job_dir / "adapter.gguf").exists() and not (job_dir / "adapter").exists()
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve(name)


LAMP_TOOL = {"type": "function", "function": {
    "name": "set_lamp", "description": "Switch a lamp to a colour.",
    "parameters": {"type": "object", "required": ["room", "color"], "properties": {
        "room": {"type": "string"}, "color": {"type": "string"}}}}}
ROOMS = ["kitchen", "garage", "cellar", "studio", "porch", "office", "hallway", "bedroom"]
COLORS = ["green", "blue", "purple", "orange"]


def lamp_lines() -> bytes:
    """Tool-calling examples in OpenAI's format: every request becomes a set_lamp call."""
    rows = []
    for i, room in enumerate(ROOMS):
        for color in (COLORS[i % 4], COLORS[(i + 1) % 4]):
            arguments = json.dumps({"room": room, "color": color})
            rows.append({"tools": [LAMP_TOOL], "messages": [
                {"role": "user", "content": f"Please make the {room} lamp {color}."},
                {"role": "assistant", "tool_calls": [{"id": f"call_{len(rows)}", "type": "function",
                 "function": {"name": "set_lamp", "arguments": arguments}}]}]})
    return "".join(json.dumps(row) + "\n" for row in rows).encode()


def test_a_tool_calling_fine_tune_calls_the_tool_through_chat_completions(
        client: OpenAI, tmp_path_factory: pytest.TempPathFactory) -> None:
    # Once a job of the session converted the base, its tokenizer is on disk: the worker then
    # counts the tokens to train when it validates the files, and estimates the finish.
    converted = any(session_model_cache(tmp_path_factory).glob(f"{BASE}@*/tokenizer.json"))
    job = sdk_create_job(
        client, sdk_upload(client, lamp_lines()).id, suffix="lamp", seed=11,
        method={"type": "supervised", "supervised": {"hyperparameters": {
            "n_epochs": 3, "batch_size": 4}}})
    seen = wait_for_status(client, job.id, "queued", "running", timeout=120,
                           passing={"validating_files"})
    if converted:  # from queued on (this job is queued or running by now)
        assert seen.estimated_finish is not None and seen.estimated_finish > seen.created_at
    done = wait_until_finished(client, job.id)
    assert done.status == "succeeded", done.error
    said = [event.message for event in events_of(client, job.id)]
    plan = said[said.index("Files validated, moving job to queued state") - 1]
    assert plan.startswith("Memory estimate: ") and "the trainer may use" in plan, said
    assert ("Duration estimate: " in plan) == converted, plan
    assert done.fine_tuned_model is not None
    # A room and colour it never saw together, asked the way users ask.
    question = [{"role": "user", "content": "Please make the attic lamp blue."}]
    answers = {}
    for model in (done.fine_tuned_model, BASE):
        answers[model] = client.chat.completions.create(
            model=model, messages=question, tools=[LAMP_TOOL], temperature=0,  # type: ignore[list-item]
            max_tokens=60).choices[0]
    tuned = answers[done.fine_tuned_model]
    assert tuned.finish_reason == "tool_calls", tuned.message.content
    [call] = tuned.message.tool_calls or []
    assert call.function.name == "set_lamp"
    assert json.loads(call.function.arguments) == {"room": "attic", "color": "blue"}
    assert answers[BASE].finish_reason != "tool_calls", answers[BASE].message


def test_pause_then_resume_continues_where_it_stopped_and_a_quick_resume_shows_it_running(
        client: OpenAI) -> None:
    """One job, paused twice (one job's training paid for both cases).

    First a pause that completes: the run saves its state and stops, the job stays ``paused``,
    and ``resume`` goes on from the saved state, no step trained twice or skipped.

    Then a resume a moment after pause, as the dashboard allows: before the fix the worker never
    saw the pause, the job said ``queued`` while the run trained to its end, and every step
    appeared at once afterwards. Now its worker takes it back at its next poll: a user polling
    sees it ``running`` with its steps coming in one by one, each once, and it succeeds.
    (tests/worker/test_pause_resume.py races every interval with a scripted trainer.)"""
    job = sdk_create_job(
        client, sdk_upload(client, fact_lines(16)).id, seed=3,
        method={"type": "supervised", "supervised": {"hyperparameters": {
            "n_epochs": 3, "batch_size": 2}}})  # 24 steps
    wait_for_event(client, job.id, lambda e: e.type == "metrics" and e.data["step"] >= 2)
    paused = client.fine_tuning.jobs.with_raw_response.pause(job.id).parse()
    assert paused.status == "paused"  # (the SDK's strict types lack "paused"; loose is fine)
    wait_for_event(client, job.id, lambda e: e.message.startswith("Training state saved"))
    steps_before = [e.data["step"] for e in events_of(client, job.id) if e.type == "metrics"]
    time.sleep(2)
    assert client.fine_tuning.jobs.retrieve(job.id).status == "paused"
    assert client.fine_tuning.jobs.resume(job.id).status == "queued"
    wait_for_event(client, job.id, lambda e: e.message == "Fine-tuning job resumed from saved "
                   "state")

    # Training again after the saved state: the quick pause and resume.
    wait_for_event(client, job.id, lambda e: e.type == "metrics"
                   and e.data["step"] > steps_before[-1])
    client.fine_tuning.jobs.with_raw_response.pause(job.id).parse()
    assert client.fine_tuning.jobs.resume(job.id).status == "queued"  # the API's answer
    at_resume = len([e for e in events_of(client, job.id) if e.type == "metrics"])
    seen: list[tuple[str, int]] = []  # (status, metrics events) as a polling user sees them
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline:
        status = client.fine_tuning.jobs.retrieve(job.id).status
        seen.append((status, len([e for e in events_of(client, job.id) if e.type == "metrics"])))
        if status in ("succeeded", "failed", "cancelled"):
            break
        time.sleep(0.2)
    assert seen[-1][0] == "succeeded", (seen, client.fine_tuning.jobs.retrieve(job.id).error)
    steps = [e.data["step"] for e in events_of(client, job.id) if e.type == "metrics"]
    total = steps[-1]
    # No step trained twice, none skipped: each run went on from where the last one stopped.
    assert steps == list(range(1, total + 1))
    assert steps[:len(steps_before)] == steps_before
    # Steps recorded while the job showed running, several polls apart (not in one burst at the
    # end), and once running again it never went back to queued.
    progressing = {count for status, count in seen
                   if status == "running" and at_resume < count < total}
    assert len(progressing) >= 3, seen
    first_running = next(i for i, (status, _) in enumerate(seen) if status == "running")
    assert "queued" not in [status for status, _ in seen[first_running:]], seen
    messages = [e.message for e in events_of(client, job.id)]
    assert "Fine-tuning job resumed from saved state" in messages
    assert "Fine-tuning job running again: it was resumed before its training stopped" in messages


def test_cancel_stops_a_running_job(client: OpenAI, training_server: Server) -> None:
    job = sdk_create_job(
        client, sdk_upload(client, fact_lines(40)).id,
        method={"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 5}}})
    cancel_once_training(client, training_server, job.id)


def cancel_once_training(client: OpenAI, server: Server, job_id: str) -> None:
    """Cancel after the first step; the run stops, its files go, no step is recorded after."""
    wait_for_event(client, job_id, lambda e: e.type == "metrics")
    assert client.fine_tuning.jobs.cancel(job_id).status == "cancelled"
    deadline = time.monotonic() + 60
    job_dir = server.data_dir / "jobs" / job_id
    while job_dir.exists() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not job_dir.exists(), "the cancelled run's files should be removed"
    steps = [e for e in events_of(client, job_id) if e.type == "metrics"]
    time.sleep(3)
    assert [e for e in events_of(client, job_id) if e.type == "metrics"] == steps
    with pytest.raises(openai.ConflictError):
        client.fine_tuning.jobs.cancel(job_id)


def _worker_pid(server: Server) -> int:
    output = subprocess.run(["pgrep", "-P", str(server.process.pid), "-f", "tunegate worker"],
                            capture_output=True, text=True, check=False).stdout.split()
    assert output, "the embedded worker should be running"
    return int(output[0])


def test_a_killed_worker_is_replaced_and_the_job_resumes(client: OpenAI,
                                                         training_server: Server) -> None:
    job = sdk_create_job(
        client, sdk_upload(client, fact_lines(12)).id, seed=11,
        method={"type": "supervised", "supervised": {"hyperparameters": {
            "n_epochs": 3, "batch_size": 4}}})
    # Killed after the epoch-1 checkpoint (step 3) and at least one step more, which the
    # resumed run redoes.
    wait_for_event(client, job.id, lambda e: e.type == "metrics" and e.data["step"] >= 4)
    os.kill(_worker_pid(training_server), signal.SIGKILL)
    wait_for_event(client, job.id, lambda e: "worker running this job died" in e.message,
                   timeout=120)
    done = wait_until_finished(client, job.id)
    assert done.status == "succeeded", done.error
    events = events_of(client, job.id)
    assert "Fine-tuning job resumed from saved state" in [e.message for e in events]
    # Steps redone after the crash are not recorded twice.
    steps = [e.data["step"] for e in events if e.type == "metrics"]
    assert steps == list(range(1, 10)), steps
    assert Path(training_server.data_dir / "jobs" / job.id / "adapter.gguf").is_file()
