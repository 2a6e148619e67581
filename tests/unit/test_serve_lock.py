"""One ``serve`` per data folder (tunegate.domain.serve_lock): a second is refused, naming the
first, and the lock ends with its holder, however that ends."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.conftest import free_port
from tunegate.domain import serve_lock

HOLDER = ("import sys, time\n"
          "from pathlib import Path\n"
          "from tunegate.domain import serve_lock\n"
          "lock = serve_lock.hold(Path(sys.argv[1]))\n"
          "print('held', flush=True)\n"
          "time.sleep(600)\n")


@contextmanager
def held_by_another_process(data_dir: Path) -> Iterator[subprocess.Popen[str]]:
    """A process holding the lock; killed with SIGKILL when the block ends."""
    with subprocess.Popen([sys.executable, "-c", HOLDER, str(data_dir)],
                          stdout=subprocess.PIPE, text=True) as holder:
        try:
            assert holder.stdout is not None and holder.stdout.readline() == "held\n"
            yield holder
        finally:
            holder.send_signal(signal.SIGKILL)


def test_a_second_hold_is_refused_until_the_first_is_released(tmp_path: Path) -> None:
    first = serve_lock.hold(tmp_path)
    with pytest.raises(serve_lock.DataFolderInUse, match=f"pid {os.getpid()}"):
        serve_lock.hold(tmp_path)
    first.release()
    serve_lock.hold(tmp_path).release()


def test_the_lock_ends_with_a_killed_holder(tmp_path: Path) -> None:
    with held_by_another_process(tmp_path) as holder, pytest.raises(
            serve_lock.DataFolderInUse, match=f"pid {holder.pid}"):
        serve_lock.hold(tmp_path)
    serve_lock.hold(tmp_path).release()  # no stale lock to remove by hand


@pytest.mark.server
def test_a_second_serve_on_the_data_folder_says_why_and_exits(tmp_path: Path) -> None:
    with held_by_another_process(tmp_path) as holder:
        result = subprocess.run(
            [sys.executable, "-m", "tunegate", "serve", "--data", str(tmp_path),
             "--port", str(free_port()), "--worker", "external"],
            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1, result.stderr
    assert f"another tunegate serve (pid {holder.pid}) is running on the data folder" \
        in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "tunegate.sqlite3").exists()  # refused before touching the folder
