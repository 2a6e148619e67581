"""Worker ids that say where their worker runs, so that a dead local worker is known at once.

``host:machine:pid:nonce``. ``machine`` names this kernel boot and PID namespace: two workers
with the same ``machine`` see the same process table, so one can ask whether the other's pid is
alive (a worker, or ``serve`` restarting after a kill -9, takes over a dead neighbour's jobs
immediately). Anything else (another host, another container, an id in an older format) can
only be judged by its heartbeat, as before.
"""

from __future__ import annotations

import hashlib
import os
import socket
from dataclasses import dataclass

from tunegate import ids


def _read(path: str) -> str:
    try:
        with open(path, encoding="ascii") as source:
            return source.read().strip()
    except OSError:
        return ""


def machine_key() -> str:
    """Ten hex digits for (boot id, PID namespace); a pid means one process under one key."""
    try:
        namespace = os.readlink("/proc/self/ns/pid")
    except OSError:
        namespace = ""
    boot = _read("/proc/sys/kernel/random/boot_id")
    if not boot or not namespace:
        return "unknown"  # no /proc: liveness cannot be told, heartbeats still work
    return hashlib.sha256(f"{boot} {namespace}".encode()).hexdigest()[:10]


def new_worker_id() -> str:
    host = socket.gethostname().replace(":", "-")[:32]
    return f"{host}:{machine_key()}:{os.getpid()}:{ids.short_id(6)}"


@dataclass(frozen=True)
class WorkerId:
    host: str
    machine: str
    pid: int

    @classmethod
    def parse(cls, worker_id: str) -> WorkerId | None:
        parts = worker_id.split(":")
        if len(parts) != 4 or not parts[2].isdigit():
            return None
        return cls(parts[0], parts[1], int(parts[2]))


def known_dead(worker_id: str) -> bool:
    """True only when ``worker_id`` ran under this machine key and its process is gone."""
    parsed = WorkerId.parse(worker_id)
    if parsed is None or parsed.machine == "unknown" or parsed.machine != machine_key():
        return False
    try:
        os.kill(parsed.pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    # A zombie (killed, its parent has not collected it yet) is dead; anything else alive is
    # the worker, or a new process that reused its pid: then the heartbeat decides.
    return _is_zombie(parsed.pid)


def _is_zombie(pid: int) -> bool:
    stat = _read(f"/proc/{pid}/stat")
    return stat.rpartition(")")[2].split()[:1] == ["Z"]
