"""The local executor: one training child process on this machine (see
``tunegate.training.child``), a :class:`~tunegate.worker.training_run.TrainingRun`."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import threading
from pathlib import Path

from tunegate.training.messages import Failed, TrainerMessage, from_line
from tunegate.training.spec import TrainingResult
from tunegate.worker.standby import Standby, spawn_child
from tunegate.worker.training_run import (  # Outcome: the training stage imports it from here
    Crash,
    Outcome,
    StoppedBySignals,
    outcome_of,
)

__all__ = ["Crash", "Outcome", "TrainerProcess", "oom_kill_count", "peak_rss_bytes"]

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
        return outcome_of(self._final, cancelled=self._cancel_sent_at is not None,
                          crash=lambda: Crash(returncode, self._peak_rss, self._oom_killed()),
                          log_path=self.log_path)

    def _oom_killed(self) -> bool | None:
        after = oom_kill_count()
        if after is None or self._oom_kills_before is None:
            return None
        return after > self._oom_kills_before


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
