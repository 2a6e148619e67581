"""A trainer child started before it is needed, so that a job does not wait for imports.

Starting ``python -m tunegate.training.child`` and importing torch, transformers and peft takes
~3.5 s of the ~6 s from a job's start to its first metrics event on 2 CPU cores; the model
itself then loads in ~0.3 s. The worker therefore keeps one child waiting with its imports done
(``--standby``); a run adopts it by writing its assignment to the child's stdin, and the worker
starts the next standby once the run has ended, so that it never competes with a run for CPU.
A child closed without an assignment exits (EOF on stdin); the worker kills it when it
stops, since a waiting child has nothing to save. Idle cost: one process holding the
imported libraries (~300 MB), which ``TUNEGATE_TRAINER_STANDBY=0`` turns off.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunegate.training.child import STANDBY_FLAG


@dataclass(frozen=True)
class AdoptedChild:
    """A running trainer child and the read end of its event pipe."""

    process: subprocess.Popen[bytes]
    events_fd: int


def spawn_child(first_argument: str, *, stdin: int | None, output: Any) -> AdoptedChild:
    """Start ``python -m tunegate.training.child FIRST_ARGUMENT EVENT_FD`` with its event pipe.

    ``first_argument`` is a spec path (a run now) or ``STANDBY_FLAG``; ``output`` receives the
    child's stdout and stderr.
    """
    read_fd, write_fd = os.pipe()
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "tunegate.training.child", first_argument, str(write_fd)],
            stdin=stdin, stdout=output, stderr=subprocess.STDOUT, pass_fds=(write_fd,))
    finally:
        os.close(write_fd)
    return AdoptedChild(process, read_fd)


class Standby:
    """At most one waiting trainer child."""

    def __init__(self) -> None:
        self._child: AdoptedChild | None = None

    def refill(self) -> None:
        """Start a waiting child unless one is already waiting."""
        if self._child is not None and self._child.process.poll() is None:
            return
        self.discard()
        self._child = spawn_child(STANDBY_FLAG, stdin=subprocess.PIPE, output=subprocess.DEVNULL)

    def adopt(self, spec_path: Path, log_path: Path) -> AdoptedChild | None:
        """Hand the waiting child a run; ``None`` when no healthy child is waiting."""
        child, self._child = self._child, None
        if child is None:
            return None
        if child.process.poll() is not None:  # it died while waiting (e.g. killed for memory)
            _close(child)
            return None
        assignment = json.dumps({"spec": str(spec_path), "log": str(log_path)}) + "\n"
        try:
            assert child.process.stdin is not None
            child.process.stdin.write(assignment.encode())
            child.process.stdin.close()
        except OSError:  # it died just now
            _close(child)
            return None
        return child

    def discard(self) -> None:
        """Stop the waiting child, if any: it has nothing to save."""
        child, self._child = self._child, None
        if child is not None:
            _close(child)


def _close(child: AdoptedChild) -> None:
    if child.process.stdin is not None and not child.process.stdin.closed:
        with contextlib.suppress(OSError):
            child.process.stdin.close()
    child.process.kill()
    child.process.wait()
    os.close(child.events_fd)
