"""Model processes' socket folders in the temporary directory (tunegate.serving.socket_folders):
those of a killed API process are swept when ``serve`` starts; no live one ever is."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tunegate import cli
from tunegate.serving import socket_folders
from tunegate.settings import Settings

MAKER = ("import sys, tempfile, time\n"
         "tempfile.tempdir = sys.argv[1]\n"
         "from tunegate.serving import socket_folders\n"
         "print(socket_folders.make_folder(), flush=True)\n"
         "time.sleep(600)\n")


def folder_of_a_killed_process(temp_dir: Path) -> Path:
    """A socket folder made by a process then killed with SIGKILL (nothing of it ran after)."""
    with subprocess.Popen([sys.executable, "-c", MAKER, str(temp_dir)], stdout=subprocess.PIPE,
                          text=True) as maker:
        assert maker.stdout is not None
        folder = Path(maker.stdout.readline().strip())
        (folder / socket_folders.SOCKET_NAME).touch()  # what a dead server leaves
        maker.send_signal(signal.SIGKILL)
    assert folder.name.startswith(f"{socket_folders.PREFIX}{maker.pid}-")
    return folder


def test_the_folders_of_a_killed_process_are_swept(tmp_path: Path) -> None:
    left = folder_of_a_killed_process(tmp_path)
    assert socket_folders.sweep(tmp_path) == [left]
    assert not left.exists()


def test_folders_of_live_processes_and_live_sockets_are_kept() -> None:
    # A short folder, not tmp_path: the socket's path must fit AF_UNIX's 108 bytes, which a
    # deep tmp_path (pytest-xdist's .../popen-gw1/..., a long TMPDIR) can exceed.
    with tempfile.TemporaryDirectory(prefix="tg-") as short:
        temp_dir = Path(short)
        mine = temp_dir / f"{socket_folders.PREFIX}{os.getpid()}-a"
        mine.mkdir()
        with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"]) as other:
            try:
                of_other = temp_dir / f"{socket_folders.PREFIX}{other.pid}-b"
                of_other.mkdir()
                # A pid that looks free (say, from another pid namespace) but a socket that
                # answers.
                answering = folder_of_a_killed_process(temp_dir)
                (answering / socket_folders.SOCKET_NAME).unlink()
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
                    server.bind(str(answering / socket_folders.SOCKET_NAME))
                    server.listen()
                    assert socket_folders.sweep(temp_dir) == []
            finally:
                other.kill()  # a failure above must not wait out its 600 s sleep
        assert mine.exists() and of_other.exists() and answering.exists()


def test_old_style_folders_are_swept_once_old_and_silent(tmp_path: Path) -> None:
    old, fresh = tmp_path / "tunegate-llama-x1y2z3", tmp_path / "tunegate-llama-a1b2c3"
    old.mkdir()
    fresh.mkdir()
    long_ago = time.time() - 2 * socket_folders.LEGACY_AGE_S
    os.utime(old, (long_ago, long_ago))
    assert socket_folders.sweep(tmp_path) == [old]
    assert fresh.exists()


def test_serve_sweeps_them_when_it_starts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    temp_dir = tmp_path / "tmp"
    temp_dir.mkdir()
    left = folder_of_a_killed_process(temp_dir)
    monkeypatch.setattr(tempfile, "tempdir", str(temp_dir))
    monkeypatch.setattr(cli.StopsWorkerFirst, "run", lambda self, sockets=None: None)
    cli.serve(Settings(data_dir=tmp_path / "data", embedded_worker=False))
    assert not left.exists()
