"""Child processes that die with the API process, whichever thread asked for them.

Linux's parent-death signal fires when the *thread* that forked the child ends, not the process.
Requests run in a pool whose threads come and go, so every inference child is forked by one
long-lived thread: killing the API (even with SIGKILL) takes its llama.cpp children with it.
"""

from __future__ import annotations

import queue
import subprocess
import threading
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from tunegate.processes import die_with_parent

_requests: queue.SimpleQueue[tuple[dict[str, Any], Future[subprocess.Popen[bytes]]]] = (
    queue.SimpleQueue())
_started = threading.Lock()
_thread: threading.Thread | None = None


def _serve() -> None:
    while True:
        kwargs, future = _requests.get()
        try:
            future.set_result(subprocess.Popen(preexec_fn=die_with_parent, **kwargs))
        except BaseException as exc:  # handed to the caller's thread
            future.set_exception(exc)


def _spawner() -> None:
    global _thread
    with _started:
        if _thread is None:
            _thread = threading.Thread(target=_serve, name="tunegate-spawner", daemon=True)
            _thread.start()


def spawn(argv: list[str], *, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """Start ``argv`` with stdout and stderr appended to ``log``; it gets SIGKILL when this
    process dies."""
    _spawner()
    future: Future[subprocess.Popen[bytes]] = Future()
    with log.open("ab") as out:  # the child keeps its own copy of the descriptor
        _requests.put(({"args": argv, "env": env, "stdin": subprocess.DEVNULL, "stdout": out,
                        "stderr": subprocess.STDOUT}, future))
        return future.result()
