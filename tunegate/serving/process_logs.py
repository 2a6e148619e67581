"""Model-process logs (``<data>/logs/llama-server-*.log``), kept bounded.

Every start of a ``llama-server`` writes a new log (one per model load, so that a crash's log
is never overwritten by the restart's), and a long-lived process logs a few lines per request.
Nothing removed them: the folder grew with every load and every request. Two bounds:

- the newest ``KEEP_LOGS`` logs stay; older ones are deleted when a new one is made;
- a log over ``MAX_LOG_BYTES`` is cut to its last ``MAX_LOG_BYTES // 2`` bytes (checked as a
  generation starts). The process appends (``O_APPEND``), so after the cut its next lines go
  to the new end; a line written during the cut may be lost, never the file.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

KEEP_LOGS = 20
MAX_LOG_BYTES = 16 * 1024 * 1024
PATTERN = "llama-server-*.log"
CUT_NOTE = b"[tunegate: earlier lines of this log were removed to keep it under %d bytes]\n"


def new_log(log_dir: Path, model_stem: str) -> Path:
    """The path for a new process's log; the oldest logs beyond ``KEEP_LOGS - 1`` go."""
    log_dir.mkdir(parents=True, exist_ok=True)
    logs = sorted(log_dir.glob(PATTERN), key=_modified)
    for old in logs[:max(0, len(logs) - (KEEP_LOGS - 1))]:
        with contextlib.suppress(OSError):  # removed meanwhile
            old.unlink()
    return log_dir / f"llama-server-{model_stem}-{time.time_ns()}.log"


def _modified(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def keep_short(log: Path, max_bytes: int = MAX_LOG_BYTES) -> bool:
    """Cut ``log`` to its last half of ``max_bytes`` if it is longer; whether it was cut."""
    try:
        if log.stat().st_size <= max_bytes:
            return False
        with log.open("r+b") as handle:
            handle.seek(-(max_bytes // 2), os.SEEK_END)
            handle.readline()  # from the start of a line
            tail = handle.read()
            handle.seek(0)
            handle.truncate()
            handle.write(CUT_NOTE % max_bytes + tail)
    except OSError:
        return False  # a log that cannot be cut is no reason to fail a request
    return True
