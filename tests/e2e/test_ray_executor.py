"""Training on a Ray cluster (TUNEGATE_EXECUTOR=ray), end to end: a real `tunegate serve
--worker external`, a `tunegate worker` that hands its runs to Ray, and a local two-node cluster
started here: a head with no CPUs for tasks (so nothing can run beside the worker) and a second
node with one CPU, started in a folder of its own with a temp dir of its own (TMPDIR), where
the run's files arrive through Ray's object store. The official SDK drives the job.

- A SmolLM2 job trains on the second node, succeeds, its checkpoints and model are served from
  the data folder, and an event names the node and its resources.
- The second node is killed mid-training and a fresh one joins: the job resumes on it from the
  last checkpoint (which came back to the data folder with its run/ state), no step twice.

Both nodes run `ray start --block` in their own process group, so the fixture ends each node
with everything it started, even when the test fails.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import free_port, start_server, stop_server
from tests.e2e.test_postgres_workers import start_worker
from tests.e2e.test_training_sdk import events_of, fact_lines, wait_for_event
from tests.helpers import sdk_create_job, sdk_upload, until, wait_until_finished
from tests.servers import sdk_client

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.ray]

RAY = shutil.which("ray", path=str(Path(sys.executable).parent))  # the venv's, beside python
NODE_EVENT = re.compile(r"Training runs on Ray node (\w+) \(([\d.]+)\) with resources (.+)")


@dataclass
class RayCluster:
    address: str
    folder: Path
    head: subprocess.Popen[bytes]
    nodes: list[subprocess.Popen[bytes]]

    def add_node(self, name: str) -> Path:
        """A node with one CPU, in ``name/`` (its working folder) with ``name/tmp`` as TMPDIR."""
        home = self.folder / name
        (home / "tmp").mkdir(parents=True, exist_ok=True)
        with (home / "node.log").open("ab") as log:
            self.nodes.append(subprocess.Popen(
                [RAY, "start", "--address", self.address, "--num-cpus", "1", "--block",
                 "--disable-usage-stats", "--object-store-memory", str(100 * 2**20)],
                cwd=home, env={**os.environ, "TMPDIR": str(home / "tmp")}, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True))
        return home

    def add_warm_node(self, name: str, converted: Path) -> Path:
        """``add_node`` for a node that has trained this base before: the converted copy in its
        per-node cache already (hard links to the session's, tests/conftest.py). Converting on
        a node is the first test's to prove; the others would only repeat it (~30 s each on
        one CPU)."""
        home = self.folder / name
        cache = home / "tmp" / "tunegate-model-cache"
        cache.mkdir(parents=True)
        shutil.copytree(converted, cache / converted.name, copy_function=_link_or_copy)
        return self.add_node(name)

    def kill_node(self, index: int) -> None:
        """What a machine that dies looks like: the node and all it runs, at once."""
        _kill_group(self.nodes[index])

    def stop(self) -> None:
        for process in [*self.nodes, self.head]:
            _kill_group(process)


def _link_or_copy(source: str, target: str) -> None:
    try:
        os.link(source, target)
    except OSError:  # another file system (a --basetemp elsewhere): copy the ~540 MB
        shutil.copy2(source, target)


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
def ray_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RayCluster]:
    if RAY is None:
        pytest.skip("ray is not installed (the 'ray' extra: make setup installs it)")
    # Unix socket paths must stay short: Ray's session folder goes under a short temp dir.
    folder = Path(tempfile.mkdtemp(prefix="tgray-", dir="/tmp"))
    port = free_port()
    # Nodes that stop answering are declared dead in seconds, not Ray's default ~30 s.
    fast = {"RAY_health_check_period_ms": "1000", "RAY_health_check_failure_threshold": "3",
            "RAY_health_check_initial_delay_ms": "1000"}
    with (folder / "head.log").open("ab") as log:
        head = subprocess.Popen(
            [RAY, "start", "--head", "--num-cpus", "0", "--port", str(port), "--block",
             "--include-dashboard=false", "--disable-usage-stats", "--temp-dir",
             str(folder / "ray"), "--object-store-memory", str(100 * 2**20)],
            cwd=folder, env={**os.environ, **fast}, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True)
    cluster = RayCluster(f"127.0.0.1:{port}", folder, head, [])
    try:
        until(lambda: _listening(port) or head.poll() is not None, "the Ray head", 120)
        assert head.poll() is None, (folder / "head.log").read_text()
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(folder, ignore_errors=True)


def _ray_env(cluster: RayCluster) -> dict[str, str]:
    return {"TUNEGATE_EXECUTOR": "ray", "TUNEGATE_RAY_ADDRESS": cluster.address,
            "TUNEGATE_RAY_CPUS": "1", "TUNEGATE_HEARTBEAT_TIMEOUT": "30"}


def test_a_job_trains_on_a_ray_node_and_its_model_is_served(
        tmp_path: Path, ray_cluster: RayCluster) -> None:
    node_home = ray_cluster.add_node("node-1")
    env = _ray_env(ray_cluster)
    server = start_server(tmp_path, "--worker", "external", env=env)
    worker = start_worker(tmp_path / "worker", server, env)
    try:
        client = sdk_client(server, api_key="local", max_retries=2)
        job = sdk_create_job(client, sdk_upload(client, fact_lines(12)).id, seed=3,
                             method={"type": "supervised", "supervised": {"hyperparameters": {
                                 "n_epochs": 2, "batch_size": 6}}})
        done = wait_until_finished(client, job.id, timeout=600)
        assert done.status == "succeeded", (done.error, worker.log()[-3000:])
        strict = sdk_client(server, api_key="local", max_retries=2,
                        _strict_response_validation=True)
        assert strict.fine_tuning.jobs.retrieve(job.id).fine_tuned_model == done.fine_tuned_model
        events = events_of(client, job.id)
        assert [e.data["step"] for e in events if e.type == "metrics"] == [1, 2, 3, 4]
        placed = [NODE_EVENT.fullmatch(e.message) for e in events]
        where = [m for m in placed if m]
        assert len(where) == 1, [e.message for e in events]
        assert "CPU=1" in where[0].group(3)
        # The run happened on node-1: its own temp dir holds the base it converted.
        assert (node_home / "tmp" / "tunegate-model-cache").is_dir()
        checkpoints = list(strict.fine_tuning.jobs.checkpoints.list(job.id))
        assert sorted(c.step_number for c in checkpoints) == [2, 4]
        for checkpoint in checkpoints:  # came back to the data folder from the node
            assert (server.data_dir / "jobs" / job.id / "checkpoints"
                    / f"step-{checkpoint.step_number}" / "adapter").is_dir()
        answer = client.chat.completions.create(
            model=done.fine_tuned_model, temperature=0, max_tokens=12,
            messages=[{"role": "user", "content": "What is the code word of planet Zorb-5?"}])
        assert answer.choices[0].message.content
        # SIGTERM still stops the worker its own way (Ray's native handler would kill it).
        worker.process.send_signal(signal.SIGTERM)
        assert worker.process.wait(timeout=60) == 0, worker.log()[-2000:]
        assert "SIGTERM received" not in worker.log()
    finally:
        worker.stop()
        stop_server(server)


def test_a_job_whose_node_dies_resumes_on_a_fresh_node(
        tmp_path: Path, ray_cluster: RayCluster, trained_smollm2: Path) -> None:
    ray_cluster.add_warm_node("node-1", trained_smollm2)
    env = _ray_env(ray_cluster)
    server = start_server(tmp_path, "--worker", "external", env=env)
    worker = start_worker(tmp_path / "worker", server, env)
    try:
        client = sdk_client(server, api_key="local", max_retries=2)
        job = sdk_create_job(client, sdk_upload(client, fact_lines(12)).id, seed=5,
                             method={"type": "supervised", "supervised": {"hyperparameters": {
                                 "n_epochs": 3, "batch_size": 4}}})  # 3 steps an epoch
        wait_for_event(client, job.id, lambda e: e.message == "Checkpoint created at step 3",
                       timeout=600)
        ray_cluster.kill_node(0)
        wait_for_event(client, job.id, lambda e: "Ray node training this job was lost"
                       in e.message, timeout=120)
        ray_cluster.add_warm_node("node-2", trained_smollm2)
        done = wait_until_finished(client, job.id, timeout=600)
        assert done.status == "succeeded", (done.error, worker.log()[-3000:])
        events = events_of(client, job.id)
        steps = [e.data["step"] for e in events if e.type == "metrics"]
        assert steps == list(range(1, 10)), steps  # every step once, in order
        nodes = [m.group(1) for m in (NODE_EVENT.fullmatch(e.message) for e in events) if m]
        assert len(nodes) == 2 and nodes[0] != nodes[1], nodes
        messages = [e.message for e in events]
        assert any("resuming after step 3" in m for m in messages), messages
        checkpoints = [c.step_number for c in client.fine_tuning.jobs.checkpoints.list(job.id)]
        assert sorted(checkpoints) == [3, 6, 9], checkpoints
    finally:
        worker.stop()
        stop_server(server)


def test_pause_frees_the_node_and_cancel_stops_the_remote_run_within_seconds(
        tmp_path: Path, ray_cluster: RayCluster, trained_smollm2: Path) -> None:
    node_tmp = ray_cluster.add_warm_node("node-1", trained_smollm2) / "tmp"
    env = _ray_env(ray_cluster)
    server = start_server(tmp_path, "--worker", "external", env=env)
    worker = start_worker(tmp_path / "worker", server, env)

    def runs_on_node() -> list[Path]:
        return list(node_tmp.glob("tunegate-run-*"))

    try:
        client = sdk_client(server, api_key="local", max_retries=2)
        job = sdk_create_job(client, sdk_upload(client, fact_lines(12)).id, seed=7,
                             method={"type": "supervised", "supervised": {"hyperparameters": {
                                 "n_epochs": 5, "batch_size": 2}}})  # 30 steps
        wait_for_event(client, job.id, lambda e: e.type == "metrics", timeout=600)
        client.fine_tuning.jobs.pause(job.id)
        until(lambda: not runs_on_node(), "the paused run to leave the node", 60)
        wait_for_event(client, job.id, lambda e: e.message.startswith("Training state saved"))
        assert (server.data_dir / "jobs" / job.id / "run" / "progress.json").is_file()
        paused_at = max(e.data["step"] for e in events_of(client, job.id) if e.type == "metrics")

        client.fine_tuning.jobs.resume(job.id)
        wait_for_event(client, job.id, lambda e: e.type == "metrics"
                       and e.data["step"] > paused_at, timeout=600)
        client.fine_tuning.jobs.cancel(job.id)
        cancelled = time.monotonic()
        until(lambda: not runs_on_node(), "the cancelled run to leave the node", 30)
        print(f"cancelled run left the node after {time.monotonic() - cancelled:.1f}s")
        assert client.fine_tuning.jobs.retrieve(job.id).status == "cancelled"
        steps = [e.data["step"] for e in events_of(client, job.id) if e.type == "metrics"]
        assert steps == list(range(1, len(steps) + 1)), steps  # the resume went on, no repeat
    finally:
        worker.stop()
        stop_server(server)
