"""A real `tunegate serve` for benchmarks: started in a data folder, ready when it answers."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx


@contextmanager
def running_server(data_dir: Path, port: int, *extra_args: str) -> Iterator[subprocess.Popen]:
    """Yield the server process once ``/v1/models`` answers; stop it afterwards."""
    server = subprocess.Popen(
        [sys.executable, "-m", "tunegate", "serve", "--port", str(port), "--data", str(data_dir),
         *extra_args],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(600):
            try:
                httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        yield server
    finally:
        server.terminate()
        server.wait(timeout=60)
