"""Running a Python grader's ``grade(sample, item)`` in a sandbox with OpenAI's limits.

Each call is one child process (``sandbox_child.py``, the interpreter tunegate runs on, in
isolated mode) in a new session, working in a temporary folder of its own that is removed
afterwards. The child limits itself before the user's code runs (see its docstring); this side
holds the wall clock, keeps at most ``output_bytes`` of what the code prints, and, when the
child has exited or run out of time, kills its whole process group before reaping it, so that
nothing it started outlives it.

The limits are OpenAI's published ones by default: 2 minutes, 2 GB of memory, one CPU, 1 GB
of disk; tests shorten them (``SandboxLimits``; the server's settings
``TUNEGATE_PYTHON_GRADER_SECONDS`` and ``TUNEGATE_PYTHON_GRADER_MEMORY_MB``).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import IO, Any

CHILD = Path(__file__).with_name("sandbox_child.py")
GiB = 1024 ** 3
# How long the interpreter may take to start and import before the CPU limit's seconds count;
# a loaded host needs it, and code that sleeps uses no CPU at all.
STARTUP_SECONDS = 5.0
_POLL_SECONDS = 0.01


@dataclass(frozen=True)
class SandboxLimits:
    seconds: float = 120.0
    memory_bytes: int = 2 * GiB
    file_bytes: int = 1 * GiB
    open_files: int = 256
    # What the code prints is read and dropped past this many bytes (its head kept).
    output_bytes: int = 64 * 1024

    @classmethod
    def configured(cls, seconds: float, memory_mb: int) -> SandboxLimits:
        """The limits the server's settings give (``TUNEGATE_PYTHON_GRADER_SECONDS`` and
        ``TUNEGATE_PYTHON_GRADER_MEMORY_MB``), the others OpenAI's."""
        return cls(seconds=seconds, memory_bytes=memory_mb * 1024 * 1024)


@dataclass(frozen=True)
class Outcome:
    """A score, or why there is none: ``error`` is ``exception``, ``not_a_number``,
    ``no_grade``, ``timeout``, ``killed`` (a signal: memory, CPU) or ``no_result``; ``server``
    is set when the sandbox itself could not run (not the code's fault)."""

    score: float | None = None
    error: str | None = None
    details: str | None = None
    server: str | None = None
    output: bytes = b""
    output_dropped: int = 0
    network_namespace: bool = False


def run(source: str, sample: Mapping[str, Any], item: Mapping[str, Any],
        limits: SandboxLimits | None = None) -> Outcome:
    limits = limits or SandboxLimits()
    folder = tempfile.mkdtemp(prefix="tunegate-grader-")
    read_end, write_end = os.pipe()
    try:
        try:
            child = _start(folder, write_end)
        except OSError as failure:
            return Outcome(server="sandbox_start", details=str(failure))
        child_result_fd = write_end  # pass_fds keeps the descriptor's number in the child
        os.close(write_end)
        write_end = -1
        request = {"source": source, "sample": sample, "item": item, "folder": folder,
                   "result_fd": child_result_fd, "limits": asdict(limits)}
        return _supervise(child, read_end, limits, request)
    finally:
        for descriptor in (read_end, write_end):
            if descriptor >= 0:
                _close(descriptor)
        shutil.rmtree(folder, ignore_errors=True)


def _start(folder: str, result_fd: int) -> subprocess.Popen[bytes]:
    environment = {"PATH": "/usr/bin:/bin", "HOME": folder, "TMPDIR": folder,
                   "LANG": "C.UTF-8", "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
                   "MKL_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-I", "-B", str(CHILD)], stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=folder, env=environment,
        start_new_session=True, close_fds=True, pass_fds=(result_fd,))


def _supervise(child: subprocess.Popen[bytes], result_fd: int, limits: SandboxLimits,
               request: dict[str, Any]) -> Outcome:
    output = _Capped(limits.output_bytes)
    reader = threading.Thread(target=output.drain, args=(child.stdout,), daemon=True)
    reader.start()
    result = _Collected()
    collector = threading.Thread(target=result.read, args=(result_fd,), daemon=True)
    collector.start()
    timed_out = False
    try:
        assert child.stdin is not None
        child.stdin.write(json.dumps(request).encode())
        child.stdin.close()
    except OSError:
        pass  # the child died at once: its exit says why
    deadline = time.monotonic() + limits.seconds + STARTUP_SECONDS
    while not _exited(child.pid):
        if time.monotonic() > deadline:
            timed_out = True
            break
        time.sleep(_POLL_SECONDS)
    _kill_group(child.pid)
    code = child.wait()
    reader.join(timeout=5)
    collector.join(timeout=5)
    return _outcome(result.text, code, timed_out, limits, output)


def _exited(pid: int) -> bool:
    """Whether the child has exited, without reaping it: its process group id stays its own
    until ``_kill_group`` has run."""
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def _outcome(text: str, code: int, timed_out: bool, limits: SandboxLimits,
             output: _Capped) -> Outcome:
    printed = Outcome(output=bytes(output.kept), output_dropped=output.dropped)
    if timed_out:
        return replace(printed, error="timeout", details=f"grade() ran past the sandbox's "
                       f"{limits.seconds:g} s limit")
    try:
        answer = json.loads(text) if text else None
    except ValueError:
        answer = None
    if not isinstance(answer, dict):
        return _death(printed, code, limits)
    printed = replace(printed, network_namespace=bool(answer.get("network_namespace")))
    if "score" in answer:
        return replace(printed, score=float(answer["score"]))
    return replace(printed, error=str(answer.get("error")), details=answer.get("details"))


def _death(printed: Outcome, code: int, limits: SandboxLimits) -> Outcome:
    """Why a child that gave no answer ended."""
    if code >= 0:
        return replace(printed, error="no_result", details=f"the grader's process exited "
                       f"with status {code} before returning a score")
    name = signal.Signals(-code).name
    why = {"SIGXCPU": f": it used its {limits.seconds:g} s of CPU",
           "SIGKILL": ": killed (out of memory?)",
           "SIGSEGV": ": it crashed (out of memory?)"}.get(name, "")
    return replace(printed, error="killed", details=f"the grader's process ended on {name}{why}")


class _Capped:
    """What the child prints: the first ``limit`` bytes kept, the rest read and counted."""

    def __init__(self, limit: int):
        self.limit = limit
        self.kept = bytearray()
        self.dropped = 0

    def drain(self, stream: IO[bytes] | None) -> None:
        if stream is None:
            return
        while chunk := stream.read1(65536):  # type: ignore[attr-defined]
            room = self.limit - len(self.kept)
            self.kept += chunk[:max(room, 0)]
            self.dropped += max(len(chunk) - max(room, 0), 0)
        stream.close()


class _Collected:
    """The child's answer on the result pipe (bounded: a score is a few bytes)."""

    LIMIT = 1024 * 1024

    def __init__(self) -> None:
        self.text = ""

    def read(self, descriptor: int) -> None:
        data = bytearray()
        while chunk := os.read(descriptor, 65536):
            if len(data) < self.LIMIT:
                data += chunk
        self.text = data[:self.LIMIT].decode("utf-8", "replace")


def _close(descriptor: int) -> None:
    with contextlib.suppress(OSError):
        os.close(descriptor)
