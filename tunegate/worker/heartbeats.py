"""A worker's heartbeat: while it holds a job or an eval run, it says so every third of the
timeout, so that no other worker takes the work over (tunegate.worker.loop reaps silent ones)."""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any

from tunegate.errors import TunegateError

log = logging.getLogger(__name__)


@contextlib.contextmanager
def beating(beat: Callable[[], Any], timeout: float, what: str) -> Iterator[None]:
    """Call ``beat`` every third of ``timeout`` while the body runs. A beat the store cannot
    record (a full disk) is logged and tried again at the next interval: the thread never dies."""
    done = threading.Event()
    interval = max(timeout / 3, 0.05)

    def beat_until_done() -> None:
        while not done.wait(interval):
            try:
                beat()
            except TunegateError as exc:
                log.warning("heartbeat of %s not recorded: %s", what, exc.message)

    thread = threading.Thread(target=beat_until_done, name=f"heartbeat-{what}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()
