"""A header flood: one client sends a huge header; the server's memory and other clients' wait.

    .venv/bin/python bench/header_flood.py [--megabytes 64]

Runs uvicorn as ``tunegate serve`` configures it (``tunegate.api.server``) around a trivial app
in a child process, so that only the HTTP layer is measured. While the flooder sends
``--megabytes`` of one header, a second client sends a request every 20 ms. Prints the flood's
answer and its time, the server's RSS before, at its peak and after, and the other client's
worst wait beside its worst on a quiet server.
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from serving import free_port

SERVER = """
import sys
import uvicorn
from tunegate.api.server import uvicorn_options
from tunegate.settings import Settings

async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})

options = uvicorn_options(Settings(port=int(sys.argv[1])))
options["log_level"] = "warning"
uvicorn.run(app, **options)
"""



def _rss_mib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) // 1024
    raise KeyError("VmRSS")


def _one_request(port: int) -> float:
    """Seconds until a plain GET is answered."""
    with socket.create_connection(("127.0.0.1", port), timeout=120) as sock:
        started = time.monotonic()
        sock.sendall(b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n")
        answer = sock.recv(100)
    assert answer.startswith(b"HTTP/1.1 200"), answer
    return time.monotonic() - started


def _flood(port: int, megabytes: int) -> tuple[str, float]:
    """The status line the flooder got (or its error) and the seconds it took."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=300) as sock:
        try:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: bench\r\nX-Big: ")
            chunk = b"a" * (1 << 20)
            for _ in range(megabytes):
                sock.sendall(chunk)
            sock.sendall(b"\r\n\r\n")
            status = sock.recv(100).split(b"\r\n")[0].decode()
        except OSError as exc:
            status = repr(exc)
    return status, time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--megabytes", type=int, default=64)
    args = parser.parse_args()
    port = free_port()
    server = subprocess.Popen([sys.executable, "-c", SERVER, str(port)])
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "the server did not start"
                time.sleep(0.05)
        quiet = max(_one_request(port) for _ in range(20))
        before = peak = _rss_mib(server.pid)
        waits: list[float] = []
        done = threading.Event()

        def probe() -> None:
            nonlocal peak
            while not done.is_set():
                waits.append(_one_request(port))
                peak = max(peak, _rss_mib(server.pid))
                time.sleep(0.02)

        prober = threading.Thread(target=probe, daemon=True)
        prober.start()
        status, seconds = _flood(port, args.megabytes)
        time.sleep(1.0)
        done.set()
        prober.join()
        after = _rss_mib(server.pid)
    finally:
        server.terminate()
        server.wait()
    print(f"{args.megabytes} MB header: {status!r} after {seconds:.2f} s; server RSS {before} -> "
          f"peak {peak} -> {after} MiB; other client: {len(waits)} requests, worst wait "
          f"{max(waits) * 1000:.0f} ms (quiet server: {quiet * 1000:.1f} ms)")


if __name__ == "__main__":
    main()
