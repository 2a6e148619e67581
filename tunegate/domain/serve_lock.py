"""One ``tunegate serve`` per data folder.

Workers may be many on one data folder (``tunegate worker``, with PostgreSQL), but the API
process owns what it keeps there for serving: merged models being written, model-process logs,
upload parts, and the sweeps that tidy them after a crash. A second ``serve`` on the same folder
would sweep what the first is writing; with SQLite both would also run an embedded worker on
one database file. So ``serve`` holds an exclusive lock on ``serve.lock`` in the data folder for
as long as it runs, and a second one is refused, naming the first.

The lock is the kernel's (``flock``): it ends with the process however the process ends, even
by SIGKILL, so a crash never leaves a stale lock to remove by hand. The file only records the
holder's pid for the message.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path
from typing import IO

LOCK_NAME = "serve.lock"


class DataFolderInUse(Exception):
    """Another ``serve`` holds the data folder."""


class ServeLock:
    """The held lock; ``release()`` (or the process's end) lets another ``serve`` start."""

    def __init__(self, handle: IO[str]):
        self._handle = handle

    def release(self) -> None:
        self._handle.close()  # closing the last descriptor releases a flock


def hold(data_dir: Path) -> ServeLock:
    """Lock ``data_dir`` for this process's ``serve``, or raise ``DataFolderInUse``."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / LOCK_NAME
    # Not truncated on open: the holder's pid must stay readable for the refusal's message.
    handle = open(path, "a+", encoding="utf-8")  # noqa: SIM115 (held while serve runs)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "unknown"
        handle.close()
        raise DataFolderInUse(
            f"another tunegate serve (pid {holder}) is running on the data folder {data_dir}; "
            "one serve per data folder: stop it, or give this one another TUNEGATE_DATA. "
            "More workers on the same data go in `tunegate worker` processes (with "
            "PostgreSQL).") from None
    except BaseException:
        handle.close()
        raise
    with contextlib.suppress(OSError):  # the pid is for messages only
        handle.truncate(0)
        handle.write(f"{os.getpid()}\n")
        handle.flush()
    return ServeLock(handle)
