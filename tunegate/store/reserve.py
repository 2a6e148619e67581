"""Disk space kept back for the writes that must work on a full disk.

SQLite needs a little room for any write, a delete included: the pages it changes go to the
write-ahead log first, which grows. On a disk with 0 bytes free, nothing could then record that a
job failed, or delete a file to free space. So the store keeps a file of ``RESERVE_BYTES`` real,
allocated bytes beside its database: a write that frees space or records how a job stopped, and
that meets a full disk, deletes the reserve and tries once more (:meth:`SqlStore._keeping_room`).
The reserve comes back (``restore``) when the disk has room for it twice over: the worker's sweep
tries every minute, and every process when it opens the store.

A file and not a free-space check: the check would hold only for our own writes, while the disk
fills from anywhere (a trainer's saved state, the model cache, other programs); blocks held by a
file are there whoever fills the disk.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
from pathlib import Path

from tunegate.errors import is_disk_full

log = logging.getLogger("tunegate.store")

# A failed job's transition and events, or a deleted file's row, change a few dozen pages of
# 4 KiB; 4 MiB covers many of them (a restore may be a minute away).
RESERVE_BYTES = 4 << 20
FILE_NAME = "tunegate.reserve"


class DiskReserve:
    """A file of ``size`` allocated bytes at ``path``, released when the disk is full."""

    def __init__(self, path: Path, size: int = RESERVE_BYTES):
        self.path = path
        self.size = size

    def release(self) -> bool:
        """Delete the reserve; ``False`` when there was none (another process took it)."""
        try:
            self.path.unlink()
        except FileNotFoundError:
            return False
        log.warning("the disk of %s is full: released the %d bytes kept for recording failures "
                    "and deletes; free space there", self.path.parent, self.size)
        return True

    def restore(self) -> bool:
        """Make the reserve if it is missing and the disk has room for it twice over (so that it
        never takes the last bytes someone just freed); return whether it is there now."""
        if self.path.is_file() and self.path.stat().st_size >= self.size:
            return True
        if shutil.disk_usage(self.path.parent).free < 2 * self.size:
            return False
        temporary = self.path.with_name(f".{FILE_NAME}.tmp-{os.getpid()}")
        try:
            with open(temporary, "wb") as file:
                # Allocated blocks, not a sparse file: a sparse file would keep nothing back.
                os.posix_fallocate(file.fileno(), 0, self.size)
            os.replace(temporary, self.path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                temporary.unlink()
            if not is_disk_full(exc):  # a safety net: its absence must not stop the store
                log.warning("could not keep %d bytes in reserve at %s: %s", self.size, self.path,
                            exc)
            return False
        return True
