"""The worker's handle on one training child process (see ``tunegate.training.child``)."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path

from tunegate.training.messages import Failed, TrainerMessage, from_line
from tunegate.training.spec import RunStatus, TrainingResult
from tunegate.worker.standby import Standby, spawn_child

# A cancelled child stops at its next step or is killed after this (the API promises ~5 s).
CANCEL_GRACE_SECONDS = 4.0


@dataclass(frozen=True)
class Crash:
    """How a child died without saying why: its exit, and what memory tells about it."""

    returncode: int
    peak_rss_bytes: int | None  # the child's high-water mark, last seen while it ran
    oom_killed: bool | None  # the kernel's OOM killer fired in our cgroup meanwhile (None: unknown)

    def describe(self) -> str:
        if self.returncode < 0:
            reason = f"was killed by signal {-self.returncode} ({signal.Signals(-self.returncode).name})"
        else:
            reason = f"exited with status {self.returncode}"
        seen = (f"; its memory peaked at {self.peak_rss_bytes / 2**20:.0f} MiB"
                if self.peak_rss_bytes else "")
        if self.oom_killed:
            verdict = "; the kernel's out-of-memory killer stopped it"
        elif self.oom_killed is False:
            verdict = "; the kernel's out-of-memory killer did not fire"
        else:
            verdict = ""
        return f"The training process {reason}{seen}{verdict}"


@dataclass(frozen=True)
class Outcome:
    """How a run ended. ``result`` is set for a child that finished (succeeded, paused,
    cancelled); ``code``/``message`` for one that failed; ``crash`` for one that died."""

    status: RunStatus
    result: TrainingResult | None = None
    code: str | None = None
    message: str | None = None
    param: str | None = None  # the request field at fault, for a failure that names one
    crash: Crash | None = None


class StoppedBySignals:
    """How a worker stops a trainer, wherever it runs: SIGUSR1 pauses it (it saves its state and
    exits), SIGTERM asks it to stop at its next step, and a kill follows when that takes longer
    than ``CANCEL_GRACE_SECONDS``. Subclasses deliver the signals (``_signal``, ``kill``)."""

    _cancel_sent_at: float | None = None

    def _signal(self, signum: int) -> None:
        raise NotImplementedError

    def kill(self) -> None:
        raise NotImplementedError

    def pause(self) -> None:
        self._signal(signal.SIGUSR1)

    def cancel(self, now: float) -> None:
        """Ask politely first; kill when the grace period is over."""
        if self._cancel_sent_at is None:
            self._cancel_sent_at = now
            self._signal(signal.SIGTERM)
        elif now - self._cancel_sent_at > CANCEL_GRACE_SECONDS:
            self.kill()


class TrainerProcess(StoppedBySignals):
    def __init__(self, spec_json: str, work_dir: Path):
        self.work_dir = work_dir
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.spec_path = work_dir / "spec.json"
        self.spec_path.write_text(spec_json)
        self.log_path = work_dir / "trainer.log"
        self.messages: queue.Queue[TrainerMessage] = queue.Queue()
        self._final: TrainingResult | Failed | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None
        self._cancel_sent_at: float | None = None
        self._peak_rss: int | None = None
        self._oom_kills_before = oom_kill_count()

    def start(self, standby: Standby | None = None) -> None:
        """Hand the run to the standby child if one is waiting, else start a child."""
        child = standby.adopt(self.spec_path, self.log_path) if standby is not None else None
        if child is None:
            with self.log_path.open("ab") as log:
                child = spawn_child(str(self.spec_path), stdin=None, output=log)
        self._process, read_fd = child.process, child.events_fd
        self._reader = threading.Thread(target=self._read, args=(read_fd,), daemon=True)
        self._reader.start()

    def _read(self, read_fd: int) -> None:
        with os.fdopen(read_fd, "r") as pipe:
            for line in pipe:
                message = from_line(line)
                if isinstance(message, (TrainingResult, Failed)):
                    self._final = message
                else:
                    self.messages.put(message)

    def drain(self) -> list[TrainerMessage]:
        """The messages that arrived since the last call; also samples the child's memory."""
        self._sample_memory()
        drained = []
        while True:
            try:
                drained.append(self.messages.get_nowait())
            except queue.Empty:
                return drained

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def kill(self) -> None:
        self._signal(signal.SIGKILL)

    def _signal(self, signum: int) -> None:
        if self.running:
            assert self._process is not None
            self._process.send_signal(signum)

    def _sample_memory(self) -> None:
        peak = peak_rss_bytes(self.pid) if self.running and self.pid else None
        if peak is not None:
            self._peak_rss = max(peak, self._peak_rss or 0)

    def outcome(self) -> Outcome:
        """Wait for the child and say how the run ended."""
        assert self._process is not None and self._reader is not None
        returncode = self._process.wait()
        self._reader.join(timeout=10)
        final = self._final
        if isinstance(final, TrainingResult):
            return Outcome(status=final.status, result=final)
        if isinstance(final, Failed):
            return Outcome(status=RunStatus.FAILED, code=final.code, message=final.message,
                           param=final.param)
        if self._cancel_sent_at is not None:
            return Outcome(status=RunStatus.CANCELLED)
        after = oom_kill_count()
        oom = None if after is None or self._oom_kills_before is None else (
            after > self._oom_kills_before)
        crash = Crash(returncode, self._peak_rss, oom)
        return Outcome(status=RunStatus.FAILED, code="training_crashed",
                       message=f"{crash.describe()}; see {self.log_path}.", crash=crash)


def peak_rss_bytes(pid: int) -> int | None:
    """A live process's peak resident memory (``VmHWM``), or ``None`` when it cannot be read."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return None


def oom_kill_count() -> int | None:
    """How many processes the OOM killer has stopped in this process's memory cgroup, or
    ``None`` where that is not visible. cgroup v2 counts in ``memory.events``, v1 in
    ``memory.oom_control``; both say ``oom_kill N``."""
    for counters in _oom_counter_files():
        try:
            with open(counters, encoding="ascii") as lines:
                for line in lines:
                    name, _, value = line.partition(" ")
                    if name == "oom_kill":
                        return int(value)
        except (OSError, ValueError):
            continue
    return None


def _oom_counter_files() -> list[str]:
    try:
        with open("/proc/self/cgroup", encoding="ascii") as cgroups:
            entries = [line.rstrip("\n").split(":", 2) for line in cgroups]
    except OSError:
        return []
    files = []
    for _, controllers, path in (entry for entry in entries if len(entry) == 3):
        if controllers == "":
            files += [f"/sys/fs/cgroup{path}/memory.events",
                      f"/sys/fs/cgroup/unified{path}/memory.events"]
        elif "memory" in controllers.split(","):
            files.append(f"/sys/fs/cgroup/memory{path}/memory.oom_control")
    # v1's memory controller first: where both exist (hybrid), v2's root has no counters.
    return sorted(files, key=lambda name: "oom_control" not in name)
