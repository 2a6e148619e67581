"""Process lifetime helpers shared by the embedded worker and the trainer child."""

from __future__ import annotations

import signal

PR_SET_PDEATHSIG = 1


def die_with_parent(signum: int = signal.SIGKILL) -> None:
    """Ask Linux to send ``signum`` to this process when its parent dies, so no orphan is
    left working (elsewhere this does nothing: the reaper still re-queues orphaned jobs)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signum)
    except (OSError, AttributeError):
        pass
