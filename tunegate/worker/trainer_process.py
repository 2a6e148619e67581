"""The worker's handle on one training child process (see ``tunegate.training.child``)."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunegate.worker.standby import Standby, spawn_child

# A cancelled child stops at its next step or is killed after this (the API promises ~5 s).
CANCEL_GRACE_SECONDS = 4.0


@dataclass(frozen=True)
class Outcome:
    """How a run ended: ``status`` is succeeded, paused, cancelled or failed."""

    status: str
    result: dict[str, Any] | None = None
    code: str | None = None
    message: str | None = None
    param: str | None = None  # the request field at fault, for a failure that names one


class TrainerProcess:
    def __init__(self, spec_json: str, work_dir: Path):
        self.work_dir = work_dir
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.spec_path = work_dir / "spec.json"
        self.spec_path.write_text(spec_json)
        self.log_path = work_dir / "trainer.log"
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        self._final: dict[str, Any] | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None
        self._cancel_sent_at: float | None = None

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
                event = json.loads(line)
                if event.get("kind") in ("result", "failed"):
                    self._final = event
                else:
                    self.events.put(event)

    def drain(self) -> list[dict[str, Any]]:
        drained = []
        while True:
            try:
                drained.append(self.events.get_nowait())
            except queue.Empty:
                return drained

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def pause(self) -> None:
        self._signal(signal.SIGUSR1)

    def cancel(self, now: float) -> None:
        """Ask politely first; kill when the grace period is over."""
        if self._cancel_sent_at is None:
            self._cancel_sent_at = now
            self._signal(signal.SIGTERM)
        elif now - self._cancel_sent_at > CANCEL_GRACE_SECONDS:
            self.kill()

    def kill(self) -> None:
        self._signal(signal.SIGKILL)

    def _signal(self, signum: int) -> None:
        if self.running:
            assert self._process is not None
            self._process.send_signal(signum)

    def outcome(self) -> Outcome:
        """Wait for the child and say how the run ended."""
        assert self._process is not None and self._reader is not None
        returncode = self._process.wait()
        self._reader.join(timeout=10)
        final = self._final
        if final and final["kind"] == "result":
            return Outcome(status=final["status"], result=final)
        if final and final["kind"] == "failed":
            return Outcome(status="failed", code=final["code"], message=final["message"],
                           param=final.get("param"))
        if self._cancel_sent_at is not None:
            return Outcome(status="cancelled")
        reason = (f"was killed by signal {-returncode}" if returncode < 0
                  else f"exited with status {returncode}")
        hint = " (most likely out of memory)" if returncode == -signal.SIGKILL else ""
        return Outcome(status="failed", code="training_crashed",
                       message=f"The training process {reason}{hint}; see {self.log_path}.")

    def tail_of_log(self, lines: int = 20) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])
