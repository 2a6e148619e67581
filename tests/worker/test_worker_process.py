"""The worker as a process: it stops on signals, and an embedded one never outlives `serve`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import start_server


def _wait_for_line(log: Path, text: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if log.exists() and text in log.read_text(errors="replace"):
            return
        time.sleep(0.1)
    raise AssertionError(f"{text!r} never appeared in {log}")


def _gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    return False


def test_repeated_sigterm_stops_the_worker(tmp_path: Path) -> None:
    log = tmp_path / "worker.log"
    with log.open("wb") as out:
        worker = subprocess.Popen([sys.executable, "-m", "tunegate", "worker"], stdout=out,
                                  stderr=subprocess.STDOUT,
                                  env={**os.environ, "TUNEGATE_DATA": str(tmp_path / "data")})
    try:
        _wait_for_line(log, "started")
        for _ in range(5):  # a signal storm once deadlocked the handler against the loop
            worker.send_signal(signal.SIGTERM)
            time.sleep(0.01)
        assert worker.wait(timeout=15) == 0
    finally:
        worker.kill()


@pytest.mark.e2e
def test_an_embedded_worker_dies_with_a_killed_server(tmp_path: Path) -> None:
    server = start_server(tmp_path, env={"TUNEGATE_WORKER_STAGES": "validate"})
    _wait_for_line(server.log_path, "tunegate.worker INFO worker")
    children = subprocess.run(["pgrep", "-P", str(server.process.pid), "-f", "tunegate worker"],
                              capture_output=True, text=True, check=False).stdout.split()
    assert children, server.log()
    server.process.kill()
    server.process.wait()
    assert _gone(int(children[0]), timeout=15), "the worker outlived its server"
