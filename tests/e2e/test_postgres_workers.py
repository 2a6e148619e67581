"""tunegate on PostgreSQL, end to end: real `tunegate serve` and `tunegate worker` processes on
a database of the session's PostgreSQL server (tests/postgres.py), driven by the official SDK.

- `serve` with its embedded worker trains a real SmolLM2 job to `succeeded`; the model answers.
- Two external workers share eight real training jobs: each is claimed once, starts once and
  succeeds once. The jobs train a tiny random llama (2 layers, hidden 64: the trainer tests'
  model, tests/training/conftest.py) from the models folder: the same trainer child, LoRA steps,
  checkpoints, saved adapter and publish as SmolLM2, in about a second of compute, so the test
  measures the queue and not the model (SmolLM2 would take ~10 s a job here; and an HF base has
  no GGUF export). Validation-only jobs would prove claims, not that each job runs once.
- A worker frozen mid-training (SIGSTOP on its process group: what a host that died or lost
  its network looks like from outside, since its pid cannot be checked from here) loses its
  job after the heartbeat timeout; the other worker resumes it from the last checkpoint and
  no step is recorded twice.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import Server, session_model_cache, start_server, stop_server
from tests.e2e.test_training_sdk import events_of, fact_lines, wait_for_event
from tests.helpers import sdk_create_job, sdk_upload, until, wait_until_finished
from tests.servers import sdk_client
from tunegate.store import open_store

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

TINY = "tiny-llama"
# Enough for both workers to claim while the other trains (each claims several), each job one
# trainer child start; twenty took 50 s of a CI run and proved nothing eight do not.
SHARED_JOBS = 8


@dataclass
class WorkerProcess:
    process: subprocess.Popen[bytes]
    log_path: Path
    frozen: bool = False

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def claimed_for_training(self) -> list[str]:
        return re.findall(r"claimed job (\S+) to train it", self.log())

    def freeze(self) -> None:
        """SIGSTOP the worker with its trainer child and heartbeat thread: alive, silent."""
        os.killpg(self.process.pid, signal.SIGSTOP)
        self.frozen = True

    def stop(self) -> None:
        if self.process.poll() is None and not self.frozen:  # a frozen one never sees SIGTERM
            os.killpg(self.process.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=60)
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


def start_worker(folder: Path, server: Server, env: dict[str, str]) -> WorkerProcess:
    """A `tunegate worker` on the server's data folder, in its own process group."""
    folder.mkdir(parents=True, exist_ok=True)
    log_path = folder / "worker.log"
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "tunegate", "worker", "--data", str(server.data_dir)],
            stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **env},
            start_new_session=True)
    return WorkerProcess(process, log_path)


@pytest.fixture
def shared_cache(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(session_model_cache(tmp_path_factory))


@pytest.fixture
def tiny_models(tmp_path: Path) -> Path:
    """A models folder holding the tiny llama as a Hugging Face base named ``tiny-llama``."""
    pytest.importorskip("torch")
    from tests.training.conftest import build_tiny_model, build_tokenizer

    folder = tmp_path / "models" / TINY
    tokenizer = build_tokenizer()
    build_tiny_model(len(tokenizer)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder.parent


def test_serve_and_its_worker_train_a_job_on_postgresql(
        tmp_path: Path, postgres_url: str, shared_cache: str) -> None:
    server = start_server(tmp_path, env={"TUNEGATE_DATABASE_URL": postgres_url,
                                         "TUNEGATE_MODEL_CACHE": shared_cache})
    try:
        client = sdk_client(server, api_key="local", max_retries=2)
        job = sdk_create_job(client, sdk_upload(client, fact_lines(12)).id, seed=3,
                             method={"type": "supervised", "supervised": {"hyperparameters": {
                                 "n_epochs": 2, "batch_size": 6}}})
        done = wait_until_finished(client, job.id)
        assert done.status == "succeeded", (done.error, server.log()[-3000:])
        strict = sdk_client(server, api_key="local", max_retries=2,
                        _strict_response_validation=True)
        assert strict.fine_tuning.jobs.retrieve(job.id).fine_tuned_model == done.fine_tuned_model
        steps = [e.data["step"] for e in events_of(client, job.id) if e.type == "metrics"]
        assert steps == [1, 2, 3, 4], steps
        answer = client.chat.completions.create(
            model=done.fine_tuned_model, temperature=0, max_tokens=12,
            messages=[{"role": "user", "content": "What is the code word of planet Zorb-5?"}])
        assert answer.choices[0].message.content
    finally:
        stop_server(server)
    # The job lives in PostgreSQL: the data folder holds files and models, no database.
    assert not list(server.data_dir.glob("*.sqlite3*"))
    store = open_store(postgres_url)
    try:
        stored = store.get_job(job.id)
        assert stored is not None and stored.status.value == "succeeded"
    finally:
        store.close()


def test_two_workers_run_eight_jobs_each_exactly_once(
        tmp_path: Path, postgres_url: str, tiny_models: Path) -> None:
    env = {"TUNEGATE_DATABASE_URL": postgres_url, "TUNEGATE_MODELS_DIR": str(tiny_models),
           "TUNEGATE_MAX_ACTIVE_JOBS": "100", "TUNEGATE_TRAIN_THREADS": "1",
           "TUNEGATE_HEARTBEAT_TIMEOUT": "30"}
    server = start_server(tmp_path, "--worker", "external", env=env)
    workers = [start_worker(tmp_path / f"worker-{i}", server, env) for i in range(2)]
    try:
        client = sdk_client(server, api_key="local", max_retries=2)
        training = sdk_upload(client, fact_lines(10)).id
        jobs = [client.fine_tuning.jobs.create(
            model=TINY, training_file=training, seed=i,
            method={"type": "supervised", "supervised": {"hyperparameters": {
                "n_epochs": 2, "batch_size": 5}}}).id for i in range(SHARED_JOBS)]
        done = {job_id: wait_until_finished(client, job_id, timeout=300) for job_id in jobs}
        failed = {job_id: job.error for job_id, job in done.items() if job.status != "succeeded"}
        assert not failed, (failed, [w.log()[-2000:] for w in workers])
        for job_id in jobs:
            events = events_of(client, job_id)
            messages = [e.message for e in events]
            assert messages.count("Fine-tuning job started") == 1, messages
            assert not [m for m in messages if "resumed" in m or "back in the queue" in m]
            assert messages.count("The job has successfully completed") == 1, messages
            steps = [e.data["step"] for e in events if e.type == "metrics"]
            assert steps == [1, 2, 3, 4], (job_id, steps)
            assert len(list(client.fine_tuning.jobs.checkpoints.list(job_id))) == 2
        claims = [worker.claimed_for_training() for worker in workers]
        assert sorted(claims[0] + claims[1]) == sorted(jobs)  # each claimed exactly once
        assert claims[0] and claims[1], "one worker did every job"
    finally:
        for worker in workers:
            worker.stop()
        stop_server(server)


def test_a_frozen_workers_job_is_taken_over_after_the_heartbeat_timeout_and_resumes(
        tmp_path: Path, postgres_url: str, shared_cache: str) -> None:
    env = {"TUNEGATE_DATABASE_URL": postgres_url, "TUNEGATE_MODEL_CACHE": shared_cache,
           "TUNEGATE_HEARTBEAT_TIMEOUT": "6"}
    server = start_server(tmp_path, "--worker", "external", env=env)
    first = start_worker(tmp_path / "worker-1", server, env)
    second: WorkerProcess | None = None
    try:
        client = sdk_client(server, api_key="local", max_retries=2)
        job = sdk_create_job(client, sdk_upload(client, fact_lines(12)).id, seed=5,
                             method={"type": "supervised", "supervised": {"hyperparameters": {
                                 "n_epochs": 3, "batch_size": 4}}})  # 3 steps an epoch
        until(lambda: job.id in first.claimed_for_training(), "the first worker's claim", 120)
        second = start_worker(tmp_path / "worker-2", server, env)
        wait_for_event(client, job.id, lambda e: e.message == "Checkpoint created at step 3")
        first.freeze()
        wait_for_event(client, job.id, lambda e: "stopped responding" in e.message, timeout=120)
        done = wait_until_finished(client, job.id)
        assert done.status == "succeeded", (done.error, second.log()[-3000:])
        assert second.claimed_for_training() == [job.id]
        events = events_of(client, job.id)
        steps = [e.data["step"] for e in events if e.type == "metrics"]
        assert steps == list(range(1, 10)), steps  # every step once, in order
        messages = [e.message for e in events]
        assert messages.count("Fine-tuning job started") == 1, messages
        assert messages.count("Fine-tuning job resumed from saved state") == 1, messages
        checkpoints = [c.step_number for c in client.fine_tuning.jobs.checkpoints.list(job.id)]
        assert sorted(checkpoints) == [3, 6, 9], checkpoints
        answer = client.chat.completions.create(
            model=done.fine_tuned_model, temperature=0, max_tokens=12,
            messages=[{"role": "user", "content": "What is the code word of planet Zorb-5?"}])
        assert answer.choices[0].message.content
    finally:
        for worker in (first, second):
            if worker is not None:
                worker.stop()
        stop_server(server)
