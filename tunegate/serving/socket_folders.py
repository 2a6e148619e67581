"""The temporary folders that hold model processes' Unix sockets, and their sweep.

Each ``llama-server`` listens on a socket in a folder of its own under the system's temporary
directory (a socket path must stay under ~107 bytes, which a data folder's path may not). A
clean stop removes the folder; a killed API process cannot, and its folders stayed for good.
So a folder is named after the process that made it, ``tunegate-llama-<pid>-<random>``, and
``serve`` sweeps, when it starts, the folders whose process is gone and whose socket no longer
answers (the second check keeps a folder whose pid only looks free, in another pid namespace
sharing /tmp). Folders named before this scheme (``tunegate-llama-<random>``) have no pid:
they are swept once their socket does not answer and they are older than ``LEGACY_AGE_S``.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import tempfile
import time
from pathlib import Path

PREFIX = "tunegate-llama-"
SOCKET_NAME = "server.sock"
LEGACY_AGE_S = 600.0
_OWNED = re.compile(rf"{PREFIX}(\d+)-[^/]+")


def make_folder() -> Path:
    """A new socket folder for a model process of this process."""
    return Path(tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-"))


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def _answers(sock_path: Path) -> bool:
    """Whether something listens on the socket (a live model process)."""
    if not sock_path.exists():
        return False
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)
        try:
            probe.connect(str(sock_path))
        except OSError:
            return False
    return True


def _abandoned(folder: Path, now: float) -> bool:
    owned = _OWNED.fullmatch(folder.name)
    if owned is not None:
        if int(owned.group(1)) == os.getpid() or _process_exists(int(owned.group(1))):
            return False
    elif now - folder.stat().st_mtime < LEGACY_AGE_S:
        return False  # an old-style folder may be one whose process is starting right now
    return not _answers(folder / SOCKET_NAME)


def sweep(temp_dir: Path | None = None) -> list[Path]:
    """Remove this user's socket folders left by processes that are gone; the removed ones."""
    root = temp_dir or Path(tempfile.gettempdir())
    now, uid = time.time(), os.getuid()
    removed = []
    for folder in root.glob(f"{PREFIX}*"):
        with contextlib.suppress(OSError):  # gone meanwhile, or not ours to remove
            if folder.is_dir() and not folder.is_symlink() and folder.stat().st_uid == uid \
                    and _abandoned(folder, now):
                shutil.rmtree(folder)
                removed.append(folder)
    return removed
