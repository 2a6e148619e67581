"""Training runs on a Ray cluster (``TUNEGATE_EXECUTOR=ray``): the only module that imports ray.

The worker keeps owning the job (claim, heartbeats, transitions, events); only the trainer
child runs elsewhere, inside a ``RemoteTrainer`` actor placed by Ray on a node with the
resources asked for. The actor starts the same ``python -m tunegate.training.child`` as the
local executor does and relays its message lines, so there is one training loop and one
message protocol. Nothing is shared but the Ray object store:

- in: the spec and one tarball (training/validation files, the starting adapter, ``run/``
  saved state and its journal, tunegate.training.journal) as a task argument; the node writes
  them to a folder of its own temp dir;
- back: the child's lines, each checkpoint as a tarball of ``checkpoints/step-N/`` *and* the
  ``run/`` state (and journal) written right after it, and at the end a tarball of what the
  run left (``adapter/``, ``results.csv``, ``result.json``, ``run/``, the journal, the log).
  The worker unpacks them into the job's folder, so the API serves them and a resume never
  needs the node again.

``RayRun`` has ``TrainerProcess``'s interface; a lost actor (its node died) ends as a crash,
which ``TrainingStage`` restarts from the last saved state on whatever node Ray picks.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import ray

from tunegate.settings import Settings
from tunegate.training import journal
from tunegate.training.messages import CheckpointSaved, Failed, Note, TrainerMessage, from_line
from tunegate.training.spec import RESULT_FILE, RunStatus, TrainingResult, TrainingSpec
from tunegate.worker.training_run import Crash, Outcome, StoppedBySignals, outcome_of

# What a finished (or paused) run sends back, relative to its work folder.
RUN_OUTPUTS = ("adapter", "results.csv", RESULT_FILE, "run", journal.FILE, "trainer.log")
INPUTS = "inputs"


@dataclass(frozen=True)
class NodeLost(Crash):
    """The actor (and its node, usually) went away mid-run."""

    detail: str = ""

    def describe(self) -> str:
        return f"The Ray node training this job was lost ({self.detail})"


def pack(root: Path, names: list[str]) -> bytes:
    """A gzip-less tarball of ``root/name`` for each name that exists (paths kept relative)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name in names:
            if (root / name).exists():
                tar.add(root / name, arcname=name)
    return buffer.getvalue()


def unpack(data: bytes, root: Path) -> list[str]:
    """Extract ``data`` into ``root``; each top-level folder it holds replaces the one there
    (so an older ``run/`` never mixes with a newer one). Returns the top-level names."""
    with tarfile.open(fileobj=io.BytesIO(data), mode="r") as tar:
        staging = Path(tempfile.mkdtemp(prefix=".unpack-", dir=root))
        try:
            tar.extractall(staging, filter="data")
            names = sorted(path.name for path in staging.iterdir())
            for name in names:
                _replace(staging / name, root / name)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return names


def _replace(source: Path, target: Path) -> None:
    if source.is_dir() and target.is_dir() and target.name == "checkpoints":
        for child in source.iterdir():  # checkpoints add up; one step replaces its own folder
            _replace(child, target / child.name)
        return
    if target.is_dir():
        shutil.rmtree(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(source, target)


# The node's side ---------------------------------------------------------------------------


class RemoteTrainer:
    """Runs one trainer child on a Ray node and buffers what it says for the worker's polls."""

    def __init__(self) -> None:
        self.work_dir = Path(tempfile.mkdtemp(prefix="tunegate-run-"))
        self._items: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._process: subprocess.Popen[bytes] | None = None
        self._pending_checkpoint: str | None = None

    def where(self) -> dict[str, Any]:
        context = ray.get_runtime_context()
        return {"node_id": context.get_node_id(), "address": ray.util.get_node_ip_address(),
                "resources": context.get_assigned_resources(), "work_dir": str(self.work_dir)}

    def start(self, spec_json: str, inputs: bytes) -> None:
        unpack(inputs, self.work_dir)
        spec = TrainingSpec.from_json(spec_json)
        local = self.work_dir / INPUTS
        # Converted bases are cached per node, across runs (a GGUF base converts once).
        cache = Path(tempfile.gettempdir()) / "tunegate-model-cache"
        spec = replace(
            spec, work_dir=str(self.work_dir), cache_dir=str(cache),
            training_file=str(local / "training.jsonl"),
            validation_file=str(local / "validation.jsonl") if spec.validation_file else None,
            init_adapter=str(local / "init_adapter") if spec.init_adapter else None)
        spec_path = self.work_dir / "spec.json"
        spec_path.write_text(spec.to_json())
        read_fd, write_fd = os.pipe()
        with (self.work_dir / "trainer.log").open("ab") as log:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "tunegate.training.child", str(spec_path), str(write_fd)],
                stdout=log, stderr=subprocess.STDOUT, pass_fds=(write_fd,))
        os.close(write_fd)
        threading.Thread(target=self._read, args=(read_fd,), daemon=True).start()

    def _read(self, read_fd: int) -> None:
        with os.fdopen(read_fd, "r") as pipe:
            for line in pipe:
                self._flush_checkpoint()
                if isinstance(from_line(line), CheckpointSaved):
                    # Its run/ state is written just after the message: packed with the next line.
                    self._pending_checkpoint = line
                else:
                    self._add({"line": line})
        assert self._process is not None
        returncode = self._process.wait()
        self._flush_checkpoint()
        self._add({"exit": returncode, "outputs": pack(self.work_dir, list(RUN_OUTPUTS))})

    def _flush_checkpoint(self) -> None:
        if self._pending_checkpoint is None:
            return
        line, self._pending_checkpoint = self._pending_checkpoint, None
        message = from_line(line)
        assert isinstance(message, CheckpointSaved)
        folder = Path(message.path).relative_to(self.work_dir)
        self._add({"line": line, "outputs": pack(self.work_dir, [str(folder), "run", journal.FILE])})

    def _add(self, item: dict[str, Any]) -> None:
        with self._lock:
            self._items.append(item)

    def poll(self, wait_seconds: float = 1.0) -> list[dict[str, Any]]:
        """What happened since the last poll (waits up to ``wait_seconds`` for something)."""
        deadline = time.monotonic() + wait_seconds
        while time.monotonic() < deadline:
            with self._lock:
                if self._items:
                    break
            time.sleep(0.05)
        with self._lock:
            items, self._items = self._items, []
        return items

    def signal(self, signum: int) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signum)

    def close(self) -> None:
        self.signal(signal.SIGKILL)
        shutil.rmtree(self.work_dir, ignore_errors=True)


# The worker's side -------------------------------------------------------------------------

_connected_to: str | None = None


def connect(address: str) -> None:
    """Join the cluster once per worker process (as a driver: it reserves no resources)."""
    global _connected_to
    if _connected_to is None:
        # ray.init installs a native SIGTERM handler that prints a stack and kills the
        # process; the worker's own (save the run's state, hand the job back) must stay.
        handlers = {signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGINT)}
        ray.init(address=address, log_to_driver=False, configure_logging=False)
        for signum, handler in handlers.items():
            if handler is not None:
                signal.signal(signum, handler)
        _connected_to = address


class RayRun(StoppedBySignals):
    """One training run on a Ray node, seen through ``TrainerProcess``'s interface."""

    def __init__(self, spec: TrainingSpec, work_dir: Path, settings: Settings):
        self.spec = spec
        self.work_dir = work_dir
        self.work_dir.mkdir(parents=True, exist_ok=True)
        (work_dir / "spec.json").write_text(spec.to_json())
        self.log_path = work_dir / "trainer.log"
        self.settings = settings
        self._messages: list[TrainerMessage] = []
        self._final: TrainingResult | Failed | None = None
        self._exit: int | None = None
        self._lost: str | None = None
        self._remote_dir: str | None = None
        self._cancel_sent_at: float | None = None
        self._actor: Any = None
        self._where: Any = None
        self._poll: Any = None

    def start(self, standby: object = None) -> None:
        connect(self.settings.ray_address)
        actor_class = ray.remote(RemoteTrainer).options(
            num_cpus=self.settings.ray_cpus_per_run, num_gpus=self.settings.ray_gpus_per_run,
            max_restarts=0, max_concurrency=4)  # poll and signal while start's thread reads
        self._actor = actor_class.remote()
        self._where = self._actor.where.remote()
        self._actor.start.remote(self.spec.to_json(), ray.put(self._inputs()))

    def _inputs(self) -> bytes:
        """The run's data and saved state, as the node's ``inputs/`` and ``run/`` folders (and the
        journal that goes with the state)."""
        staging = Path(tempfile.mkdtemp(prefix=".inputs-", dir=self.work_dir))
        try:
            inputs = staging / INPUTS
            inputs.mkdir()
            shutil.copyfile(self.spec.training_file, inputs / "training.jsonl")
            if self.spec.validation_file:
                shutil.copyfile(self.spec.validation_file, inputs / "validation.jsonl")
            if self.spec.init_adapter:
                shutil.copytree(self.spec.init_adapter, inputs / "init_adapter")
            if (self.work_dir / "run").is_dir():
                shutil.copytree(self.work_dir / "run", staging / "run")
                if (self.work_dir / journal.FILE).is_file():  # what the run reported up to it
                    shutil.copyfile(self.work_dir / journal.FILE, staging / journal.FILE)
            return pack(staging, [INPUTS, "run", journal.FILE])
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def _pump(self, wait_seconds: float = 0.0) -> None:
        """Take in what the actor has for us, without blocking the worker's loop."""
        if self.finished:
            return
        try:
            if self._remote_dir is None:
                if not ray.wait([self._where], timeout=wait_seconds)[0]:
                    return
                self._announce(ray.get(self._where))
                self._poll = self._actor.poll.remote()
            if not ray.wait([self._poll], timeout=wait_seconds)[0]:
                return
            items = ray.get(self._poll)
        except (ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError) as exc:
            self._lost = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
            return
        for item in items:
            self._take(item)
        if not self.finished:
            self._poll = self._actor.poll.remote()

    def _announce(self, where: dict[str, Any]) -> None:
        self._remote_dir = where["work_dir"]
        resources = ", ".join(f"{name}={amount:g}" for name, amount
                              in sorted(where["resources"].items())) or "none"
        self._messages.append(Note(f"Training runs on Ray node {where['node_id']} "
                                   f"({where['address']}) with resources {resources}"))

    def _take(self, item: dict[str, Any]) -> None:
        if "outputs" in item:
            unpack(item["outputs"], self.work_dir)
        if "exit" in item:
            self._exit = item["exit"]
            return
        message = self._localized(from_line(item["line"]))
        if isinstance(message, (TrainingResult, Failed)):
            self._final = message
        else:
            self._messages.append(message)

    def _localized(self, message: TrainerMessage) -> TrainerMessage:
        """The node's paths in a message, as paths in the job's own folder."""
        def local(path: str | None) -> str | None:
            if path is None or self._remote_dir is None:
                return path
            return str(self.work_dir / Path(path).relative_to(self._remote_dir))
        if isinstance(message, CheckpointSaved):
            return replace(message, path=local(message.path) or message.path)
        if isinstance(message, TrainingResult):
            return replace(message, adapter_dir=local(message.adapter_dir),
                           results_csv=local(message.results_csv))
        return message

    @property
    def finished(self) -> bool:
        return self._exit is not None or self._lost is not None

    def drain(self) -> list[TrainerMessage]:
        self._pump()
        drained, self._messages = self._messages, []
        return drained

    @property
    def pid(self) -> int | None:
        return None

    @property
    def running(self) -> bool:
        self._pump()
        return not self.finished

    def kill(self) -> None:
        if self._actor is not None:
            ray.kill(self._actor, no_restart=True)

    def _signal(self, signum: int) -> None:
        if self._actor is not None and not self.finished:
            self._actor.signal.remote(signum)

    def outcome(self) -> Outcome:
        while not self.finished:
            self._pump(wait_seconds=1.0)
        self._free_node()
        final = self._final
        if isinstance(final, TrainingResult) and final.status is RunStatus.SUCCEEDED:
            shutil.rmtree(self.work_dir / "run", ignore_errors=True)  # the node cleared its own
        return outcome_of(final, cancelled=self._cancel_sent_at is not None,
                          crash=self._crash, log_path=self.log_path)

    def _crash(self) -> Crash:
        if self._lost is not None:
            return NodeLost(-9, None, None, detail=self._lost)
        return Crash(self._exit or 0, None, None)

    def _free_node(self) -> None:
        """The run is over: its actor goes, so the node's resources are free for the next."""
        if self._actor is None:
            return
        # Lost already, or slow: the kill below frees it either way.
        with contextlib.suppress(Exception):
            ray.get(self._actor.close.remote(), timeout=10)
        ray.kill(self._actor, no_restart=True)

