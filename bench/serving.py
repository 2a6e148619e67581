"""A real `tunegate serve` for benchmarks: the tests' own (tests/servers.py), so a benchmark
never measures a server that did not start: it is handed back once it answers, else the run
stops with the server's log."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository: tests/servers.py

from tests.servers import Server, free_port, running_server  # noqa: E402

__all__ = ["Server", "free_port", "running_server"]
