"""The worker as a process: it stops on signals, and an embedded one never outlives `serve`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import start_server, stop_server


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


@pytest.mark.server
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


@pytest.mark.e2e
def test_an_upload_cut_by_kill_9_leaves_nothing_behind(tmp_path: Path) -> None:
    """A process writing an upload is killed mid-write (as `serve` is by kill -9); when a
    server starts on the folder, its worker's first sweep removes the part file, and no file
    is listed. (A real upload reaches files/ only once its body is complete, for a moment too
    short to kill it in reliably; the writer below is the same code, stopped by a pipe.)"""
    import httpx

    from tunegate.worker.janitor import PARTIAL_GRACE_SECONDS

    files = tmp_path / "server-data" / "files"
    writer = subprocess.Popen(
        [sys.executable, "-c", "import sys; from pathlib import Path; "
         "from tunegate.domain.files import FileStorage; "
         f"FileStorage(Path({str(files)!r})).write('file-cut', sys.stdin.buffer)"],
        stdin=subprocess.PIPE)
    assert writer.stdin is not None
    writer.stdin.write(b"x" * 2**20)
    writer.stdin.flush()
    deadline = time.monotonic() + 30
    while not (files / ".partial-file-cut").exists():
        assert time.monotonic() < deadline, "the writer never started"
        time.sleep(0.05)
    writer.kill()
    writer.wait()
    writer.stdin.close()
    time.sleep(PARTIAL_GRACE_SECONDS)  # the grace a just-created part gets
    server = start_server(tmp_path, env={"TUNEGATE_WORKER_STAGES": "validate"})
    try:
        deadline = time.monotonic() + 60
        while os.listdir(files) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert os.listdir(files) == []
        assert httpx.get(f"{server.api}/files").json()["data"] == []
    finally:
        stop_server(server)
