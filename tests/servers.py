"""A real ``tunegate serve`` for tests and benchmarks: started on a free port in a folder of its
own, handed back only once it answers (else an error with its log), stopped with everything it
runs, and an official ``openai`` client for it. ``bench/`` imports this module too, so a
benchmark never measures a server that did not start."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from openai import OpenAI

READY_SECONDS = 60.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    base_url: str
    data_dir: Path
    process: subprocess.Popen[bytes]
    log_path: Path
    # Every SDK client made for this server, closed when it stops: an OpenAI client sits in a
    # reference cycle, and a garbage collection that frees its pooled socket before the client
    # fails whichever later test is running then with an unclosed-socket ResourceWarning.
    clients: list[OpenAI] = field(default_factory=list)

    @property
    def api(self) -> str:
        return f"{self.base_url}/v1"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


# The command that takes tunegate's command-line arguments: this checkout's package by default.
TUNEGATE_CLI = (sys.executable, "-m", "tunegate")


def start_server(tmp_path: Path, *extra_args: str, env: dict[str, str] | None = None,
                 cli: Sequence[str] = TUNEGATE_CLI, cwd: Path | None = None,
                 port: int | None = None, ready_seconds: float = READY_SECONDS) -> Server:
    """Start ``tunegate serve`` (run by ``cli``, in ``cwd``) and wait until it answers; the
    caller stops it. The same ``tmp_path`` (and ``port``) starts it again on the same data."""
    port = port or free_port()
    data_dir = tmp_path / "server-data"
    log_path = tmp_path / "server.log"
    environment = {**os.environ, "TUNEGATE_HEARTBEAT_TIMEOUT": "10", **(env or {})}
    with log_path.open("ab") as log:
        # Its own process group, so that a test can kill the server with everything it runs.
        process = subprocess.Popen(
            [*cli, "serve", "--port", str(port), "--data", str(data_dir), *extra_args],
            stdout=log, stderr=subprocess.STDOUT, env=environment, cwd=cwd,
            start_new_session=True,
        )
    server = Server(f"http://127.0.0.1:{port}", data_dir, process, log_path)
    deadline = time.monotonic() + ready_seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"tunegate serve exited early:\n{server.log()}")
        try:
            if httpx.get(f"{server.api}/openapi.json", timeout=2).status_code == 200:  # public
                return server
        except httpx.HTTPError:
            time.sleep(0.2)
    stop_server(server)
    raise RuntimeError(f"tunegate serve did not become ready:\n{server.log()}")


def start_server_afresh(tmp_path: Path, *extra_args: str, **options: Any) -> Server:
    """``start_server`` with none of the developer's ``TUNEGATE_*`` settings: for module-scoped
    fixtures, which ``_isolated_environment`` (function-scoped) has not reached yet."""
    with pytest.MonkeyPatch.context() as patch:
        for name in [name for name in os.environ if name.startswith("TUNEGATE_")]:
            patch.delenv(name)
        return start_server(tmp_path, *extra_args, **options)


def stop_server(server: Server) -> None:
    for client in server.clients:
        client.close()
    server.process.terminate()
    try:
        server.process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()


@contextmanager
def running_server(folder: Path, *extra_args: str, **options: Any) -> Iterator[Server]:
    """``start_server`` for a ``with`` block: stopped however the block ends."""
    server = start_server(folder, *extra_args, **options)
    try:
        yield server
    finally:
        stop_server(server)


def sdk_client(server: Server, **options: Any) -> OpenAI:
    """The official SDK pointed at ``server`` (any key: an open server ignores it), closed when
    the server stops."""
    client = OpenAI(base_url=server.api, api_key=options.pop("api_key", "sk-test"), **options)
    server.clients.append(client)
    return client
