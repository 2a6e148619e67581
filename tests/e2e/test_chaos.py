"""Chaos on the real path: kill -9 the worker, the trainer child and the whole server at chosen
moments of one real training job, and check that nothing was redone, lost or left behind.

The moments: mid-epoch (the worker), right after a checkpoint (the trainer child), during the
GGUF export (the whole process group, then a restart of `serve` on the same data folder) and
between the export and the final commit (the worker). The last two cannot be timed from
outside; the worker freezes there for a test (tunegate.worker.faults) and is killed frozen.
The heartbeat timeout is ten minutes, so every takeover below is the fast, local one.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from openai import OpenAI

from tests.conftest import Server, session_model_cache, start_server, stop_server
from tests.e2e.test_training_sdk import events_of, fact_lines, wait_for_event
from tests.helpers import sdk_create_job, sdk_upload, until, wait_until_finished
from tests.servers import sdk_client

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def _children(parent: int, pattern: str) -> list[int]:
    found = subprocess.run(["pgrep", "-P", str(parent), "-f", pattern], capture_output=True,
                           text=True, check=False).stdout.split()
    return [int(pid) for pid in found]


def worker_pid(server: Server) -> int:
    pids = until(lambda: _children(server.process.pid, "tunegate worker"), "the worker", 300)
    assert isinstance(pids, list)
    return int(pids[0])


def trainer_pid(server: Server) -> int:
    def find() -> list[int]:
        return _children(worker_pid(server), "tunegate.training.child")
    pids = until(find, "the trainer child", 300)
    assert isinstance(pids, list)
    return int(pids[0])


class Chaos:
    """One server on one data folder, killed and started again."""

    def __init__(self, root: Path, cache: Path):
        self.root = root
        self.freeze_dir = root / "freeze"
        self.freeze_dir.mkdir()
        self.env = {"TUNEGATE_MODEL_CACHE": str(cache), "TUNEGATE_HEARTBEAT_TIMEOUT": "600",
                    "TUNEGATE_TEST_FREEZE_AT": "export,finalize",
                    "TUNEGATE_TEST_FREEZE_DIR": str(self.freeze_dir)}
        self.server = start_server(root, env=self.env)
        self.port = int(self.server.base_url.rsplit(":", 1)[1])

    def client(self) -> OpenAI:
        return sdk_client(self.server, api_key="local", max_retries=2)

    def kill_group_and_restart(self) -> None:
        os.killpg(self.server.process.pid, signal.SIGKILL)
        self.server.process.wait()
        for client in self.server.clients:  # their sockets point at the killed server
            client.close()
        self.server = start_server(self.root, env=self.env, port=self.port)

    def frozen_at(self, point: str, job_id: str) -> None:
        until(lambda: (self.freeze_dir / f"{point}-{job_id}").exists(),
              f"the {point} freeze", 300)


@pytest.fixture
def chaos(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chaos]:
    cache = session_model_cache(tmp_path_factory)
    chaos = Chaos(tmp_path_factory.mktemp("chaos"), cache)
    yield chaos
    stop_server(chaos.server)


def test_kills_at_every_stage_lose_and_repeat_nothing(chaos: Chaos) -> None:
    client = chaos.client()
    job = sdk_create_job(
        client, sdk_upload(client, fact_lines(12)).id, seed=5,
        method={"type": "supervised", "supervised": {"hyperparameters": {
            "n_epochs": 3, "batch_size": 4}}})  # 3 steps per epoch, 9 in all

    # 1. The worker, mid-epoch (before any saved state: the new run starts over, and the steps
    #    already recorded are not recorded again).
    wait_for_event(client, job.id, lambda e: e.type == "metrics" and e.data["step"] >= 2)
    os.kill(worker_pid(chaos.server), signal.SIGKILL)
    wait_for_event(client, job.id, lambda e: "worker running this job died" in e.message)

    # 2. The trainer child alone, right after the epoch-1 checkpoint: its worker restarts it.
    wait_for_event(client, job.id, lambda e: e.message == "Checkpoint created at step 3")
    os.kill(trainer_pid(chaos.server), signal.SIGKILL)
    wait_for_event(client, job.id, lambda e: e.level == "warn" and "signal 9" in e.message
                   and "Restarting it" in e.message)

    # 3. Everything (serve, worker, trainer), during the export; then serve starts again.
    chaos.frozen_at("export", job.id)
    chaos.kill_group_and_restart()
    client = chaos.client()

    # 4. The new worker, between the export and the final commit.
    chaos.frozen_at("finalize", job.id)
    os.kill(worker_pid(chaos.server), signal.SIGKILL)

    done = wait_until_finished(client, job.id, timeout=600)
    assert done.status == "succeeded", done.error
    events = events_of(client, job.id)
    steps = [e.data["step"] for e in events if e.type == "metrics"]
    assert steps == list(range(1, 10)), steps  # every step once, in order
    messages = [e.message for e in events]
    assert "Fine-tuning job resumed: training had finished; exporting and publishing" in messages
    checkpoints = [c.step_number for c in client.fine_tuning.jobs.checkpoints.list(job.id)]
    assert sorted(checkpoints) == [3, 6, 9], checkpoints
    assert len([m for m in client.models.list() if m.id == done.fine_tuned_model]) == 1

    answer = client.chat.completions.create(
        model=done.fine_tuned_model, temperature=0, max_tokens=12,
        messages=[{"role": "user", "content": "What is the code word of planet Zorb-5?"}])
    assert answer.choices[0].message.content

    # Nothing on disk that no row owns: the files are the listed ones, the job folder holds the
    # model files only.
    listed = {f.id for f in client.files.list()}
    on_disk = set(os.listdir(chaos.server.data_dir / "files"))
    assert on_disk == listed, on_disk ^ listed
    job_folder = chaos.server.data_dir / "jobs" / job.id
    assert os.listdir(chaos.server.data_dir / "jobs") == [job.id]
    assert not {"run", "spec.json"} & set(os.listdir(job_folder)), os.listdir(job_folder)
    assert not [name for name in os.listdir(job_folder) if name.startswith(".")]


def test_sigterm_to_serve_stops_its_worker_first_and_requeues_the_run(
        tmp_path_factory: pytest.TempPathFactory) -> None:
    from tunegate.settings import Settings
    from tunegate.store import open_store

    cache = session_model_cache(tmp_path_factory)
    server = start_server(tmp_path_factory.mktemp("sigterm"),
                          env={"TUNEGATE_MODEL_CACHE": str(cache)})
    try:
        client = sdk_client(server, api_key="local", max_retries=2)
        job = sdk_create_job(
            client, sdk_upload(client, fact_lines(12)).id,
            method={"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 5}}})
        wait_for_event(client, job.id, lambda e: e.type == "metrics")
        worker, trainer = worker_pid(server), trainer_pid(server)
        server.process.send_signal(signal.SIGTERM)
        server.process.wait(timeout=60)
        for pid in (worker, trainer):  # gone before serve was
            with pytest.raises(ProcessLookupError):
                os.kill(pid, 0)
    finally:
        stop_server(server)
    store = open_store(Settings(data_dir=server.data_dir).sqlalchemy_url)
    stored = store.get_job(job.id)
    assert stored is not None and stored.status.value == "queued"
    messages = [e.message for e in store.list_events(job.id, after=None, limit=100).items]
    assert any("shutting down; training state saved" in text for text in messages), messages
    assert "Fine-tuning job cancelled" not in messages
