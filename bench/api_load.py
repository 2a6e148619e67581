"""The API under load: server CPU per request, many concurrent clients, training beside them.

    .venv/bin/python bench/api_load.py [--items 51] [--clients 50] [--seconds 20] [--train]

It starts a real `tunegate serve` (worker external, so the seeded jobs stay where they are) on a
free port in a temporary data folder, seeds ``--items`` files and as many jobs, and measures

(a) sequential, one client with keep-alive: the server process's CPU time (utime + stime from
    /proc; the embedded worker and other processes excluded) per request of ``GET /v1/models``,
    ``GET /v1/fine_tuning/jobs?limit=20`` and ``GET /v1/files``, over ``--rounds`` rounds
    (min and median printed). CPU time, not wall time: other people's processes on a shared
    machine do not count;
(b) ``--clients`` concurrent asyncio clients (each its own connection, as separate programs
    would be; httpx's defaults otherwise, like the openai SDK) alternating
    ``GET /v1/fine_tuning/jobs`` and ``GET /v1/files`` for ``--seconds``: requests/s, p50/p99
    latency, HTTP errors and failed requests by exception (a dropped connection shows up as
    RemoteProtocolError / ReadError / ConnectError), and the warnings and errors the server
    logged meanwhile. Each client sends its next request when it has the answer, or, with
    ``--rate R``, all of them together R requests/s;
(b2) ``--pause-clients`` clients doing the same but pausing 4.9-5.1 s after each answer: about
    as long as httpx keeps an idle connection, where a server closing idle connections after
    5 s (uvicorn's default) races the client's next request.

``--train`` then (c) starts a second server with its embedded worker, trains the GSM8K sample
(batch 1, 50 epochs) and, in alternating ``--seconds`` windows without and with the load of
(b), counts optimizer steps (metrics events) and the CPU used by the trainer, the API and
everything else (in cores' worth), with the trainer's thread-count changes.
``--trainer-nice N`` / ``--api-nice N`` renice the trainer or the API process from outside, to
compare priorities (without them: what ``tunegate serve`` does by itself);
``--nice-sequence 0,10 --train-rounds 6`` alternates the trainer's nice value between window
pairs of one run, so that both meet the same load from other processes.
Set ``TUNEGATE_MODEL_CACHE`` to a folder to convert the base model once for several runs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from serving import free_port

REPO = Path(__file__).resolve().parents[1]
TRAIN_DATA = REPO / "tests" / "data" / "microsoft-foundry__Text-GSM8K__chat_train.jsonl"
CLOCK_TICK = os.sysconf("SC_CLK_TCK")
SEQUENTIAL = (
    ("GET /v1/models", "/v1/models"),
    ("GET /v1/fine_tuning/jobs?limit=20", "/v1/fine_tuning/jobs?limit=20"),
    ("GET /v1/files", "/v1/files"),
)
LOAD_PATHS = ("/v1/fine_tuning/jobs", "/v1/files")


def cpu_model() -> str:
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True,
                                   check=False).stdout.splitlines():
            if line.startswith("Model name:"):
                return f"{line.split(':', 1)[1].strip()}, {os.cpu_count()} cores"
    except OSError:
        pass
    return f"{platform.processor() or 'unknown CPU'}, {os.cpu_count()} cores"


def cpu_seconds(pid: int) -> float:
    """utime + stime of one process (all its threads; not its children)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICK



@dataclass
class Server:
    process: subprocess.Popen[bytes]
    base: str
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def log_size(self) -> int:
        return self.log_path.stat().st_size

    def log_since(self, offset: int) -> list[str]:
        with self.log_path.open("rb") as log:
            log.seek(offset)
            return log.read().decode(errors="replace").splitlines()


@contextlib.contextmanager
def running_server(folder: Path, *args: str, env: dict[str, str] | None = None) -> Iterator[Server]:
    port = free_port()
    log_path = folder / f"server-{port}.log"
    environment = {**os.environ, "TUNEGATE_MAX_ACTIVE_JOBS": "100000", **(env or {})}
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "tunegate", "serve", "--port", str(port),
             "--data", str(folder / f"data-{port}"), *args],
            stdout=log, stderr=subprocess.STDOUT, env=environment)
    server = Server(process, f"http://127.0.0.1:{port}", log_path)
    try:
        deadline = time.monotonic() + 120
        while True:
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("tunegate serve did not start:\n" + log_path.read_text())
            try:
                if httpx.get(f"{server.base}/v1/openapi.json", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _rows(count: int) -> bytes:
    rows = [{"messages": [{"role": "user", "content": f"What is {i} plus {i}?"},
                          {"role": "assistant", "content": f"{i} plus {i} is {2 * i}."}]}
            for i in range(count)]
    return "".join(json.dumps(row) + "\n" for row in rows).encode()


def seed(client: httpx.Client, items: int) -> None:
    """``items`` files (small valid training files) and ``items`` jobs on them."""
    file_ids = []
    for index in range(items):
        response = client.post("/v1/files", data={"purpose": "fine-tune"},
                               files={"file": (f"train-{index}.jsonl", _rows(10))})
        response.raise_for_status()
        file_ids.append(response.json()["id"])
    for file_id in file_ids:
        client.post("/v1/fine_tuning/jobs", json={
            "model": "SmolLM2-135M-Instruct", "training_file": file_id}).raise_for_status()


# (a) sequential ------------------------------------------------------------------------------


def sequential(server: Server, requests: int, rounds: int) -> list[tuple[str, list[float]]]:
    """Server CPU ms per request of each SEQUENTIAL path, one result per round."""
    results = []
    with httpx.Client(base_url=server.base, timeout=30) as client:
        for label, path in SEQUENTIAL:
            for _ in range(50):  # warm: caches, the connection, lazy imports
                client.get(path).raise_for_status()
            per_round = []
            for _ in range(rounds):
                before = cpu_seconds(server.pid)
                for _ in range(requests):
                    client.get(path).raise_for_status()
                per_round.append((cpu_seconds(server.pid) - before) * 1000 / requests)
            results.append((label, per_round))
    return results


# (b) concurrent ------------------------------------------------------------------------------


@dataclass
class LoadResult:
    seconds: float
    latencies: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    failures: Counter[str] = field(default_factory=Counter)
    server_cpu: float = 0.0
    client_cpu: float = 0.0
    server_log: list[str] = field(default_factory=list)

    @property
    def ok(self) -> int:
        return self.statuses.get(200, 0)

    def percentile(self, share: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else 0.0


async def _one_client(base: str, index: int, deadline: float, result: LoadResult,
                      shared: httpx.AsyncClient | None, pause: tuple[float, float],
                      interval: float) -> None:
    # httpx's defaults otherwise (as the openai SDK's): 5 s keep-alive expiry.
    own = None if shared else httpx.AsyncClient(
        base_url=base, timeout=30, limits=httpx.Limits(max_connections=1))
    client = shared or own
    assert client is not None
    turn = index
    next_at = time.monotonic() + random.uniform(0, interval)  # clients spread over an interval
    try:
        while time.monotonic() < deadline:
            if interval:  # paced: one request per interval, missed turns are not made up
                await asyncio.sleep(max(0.0, next_at - time.monotonic()))
                next_at = max(next_at + interval, time.monotonic())
            path = LOAD_PATHS[turn % len(LOAD_PATHS)]
            turn += 1
            started = time.perf_counter()
            try:
                response = await client.get(path)
            except httpx.HTTPError as exc:
                result.failures[type(exc).__name__] += 1
                await asyncio.sleep(0.05)
                continue
            result.latencies.append(time.perf_counter() - started)
            result.statuses[response.status_code] += 1
            if pause[1]:
                await asyncio.sleep(random.uniform(*pause))
    finally:
        if own is not None:
            await own.aclose()


async def _load(base: str, clients: int, seconds: float, result: LoadResult,
                shared_client: bool, pause: tuple[float, float], rate: float) -> None:
    shared = httpx.AsyncClient(base_url=base, timeout=30) if shared_client else None
    deadline = time.monotonic() + seconds
    try:
        await asyncio.gather(*(_one_client(base, index, deadline, result, shared, pause,
                                           clients / rate if rate else 0.0)
                               for index in range(clients)))
    finally:
        if shared is not None:
            await shared.aclose()


def concurrent(server: Server, clients: int, seconds: float, shared_client: bool = False,
               pause: tuple[float, float] = (0.0, 0.0), rate: float = 0.0) -> LoadResult:
    """``clients`` clients for ``seconds``, each sending its next request as soon as it has
    the answer (closed loop), or waiting ``pause`` (a uniform range of seconds) first, or, with
    ``rate``, pacing all of them to ``rate`` requests/s in all."""
    result = LoadResult(seconds)
    log_offset = server.log_size()
    server_before, client_before = cpu_seconds(server.pid), time.process_time()
    started = time.monotonic()
    asyncio.run(_load(server.base, clients, seconds, result, shared_client, pause, rate))
    result.seconds = time.monotonic() - started
    result.server_cpu = cpu_seconds(server.pid) - server_before
    result.client_cpu = time.process_time() - client_before
    result.server_log = [line for line in server.log_since(log_offset)
                         if " WARNING " in line or " ERROR " in line or "Traceback" in line]
    return result


# (c) training beside the load --------------------------------------------------------------


def _descendants(pid: int) -> list[int]:
    found, frontier = [], [pid]
    while frontier:
        parent = frontier.pop()
        try:
            children = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
        except OSError:
            continue
        found += [int(child) for child in children]
        frontier += [int(child) for child in children]
    return found


def _trainer_pid(server: Server) -> int | None:
    for pid in _descendants(server.pid):
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"tunegate.training.child" in command and b"--standby" not in command:
            return pid
    return None


def _host_busy() -> float:
    """Busy CPU seconds of the whole machine (all cores) so far, from /proc/stat."""
    ticks = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    return (sum(ticks) - ticks[3] - ticks[4]) / CLOCK_TICK


def _events(client: httpx.Client, job_id: str) -> list[dict]:
    events: list[dict] = []
    after = None
    while True:
        params = {"limit": 100, **({"after": after} if after else {})}
        page = client.get(f"/v1/fine_tuning/jobs/{job_id}/events", params=params).json()
        events += page["data"]
        if not page["has_more"]:
            return events
        after = page["data"][-1]["id"]


@dataclass
class Window:
    label: str
    start: float
    end: float
    trainer_cpu: float  # CPU seconds of the trainer process
    api_cpu: float  # of the API process
    others_cpu: float  # of everything else on the machine (this bench's clients included)
    nice: int = 0  # the trainer's
    steps: int = 0
    threads: str = ""  # the trainer's thread count changes inside the window
    load: LoadResult | None = None


def _measured(label: str, server: Server, trainer: int, work: Callable[[], LoadResult | None]
              ) -> Window:
    before = (time.time(), cpu_seconds(trainer), cpu_seconds(server.pid), _host_busy())
    load = work()
    after = (time.time(), cpu_seconds(trainer), cpu_seconds(server.pid), _host_busy())
    trainer_cpu, api_cpu = after[1] - before[1], after[2] - before[2]
    return Window(label, before[0], after[0], trainer_cpu, api_cpu,
                  after[3] - before[3] - trainer_cpu - api_cpu, load=load)


def training(folder: Path, args: argparse.Namespace) -> list[Window]:
    with running_server(folder) as server, \
            httpx.Client(base_url=server.base, timeout=60) as client:
        training_file = client.post("/v1/files", data={"purpose": "fine-tune"}, files={
            "file": ("gsm8k.jsonl", TRAIN_DATA.read_bytes())}).json()["id"]
        job = client.post("/v1/fine_tuning/jobs", json={
            "model": "SmolLM2-135M-Instruct", "training_file": training_file, "seed": 1,
            "method": {"type": "supervised", "supervised": {"hyperparameters": {
                "n_epochs": 50, "batch_size": 1}}}}).json()
        seed(client, args.items)
        # Wait for training to run (a cold model cache converts the GGUF first).
        deadline = time.monotonic() + 300
        while _trainer_pid(server) is None or not any(
                event["type"] == "metrics" for event in client.get(
                    f"/v1/fine_tuning/jobs/{job['id']}/events", params={"limit": 5}).json()["data"]):
            if time.monotonic() > deadline:
                raise SystemExit("training did not start:\n" + server.log_path.read_text())
            time.sleep(1)
        trainer = _trainer_pid(server)
        assert trainer is not None
        if args.trainer_nice:
            os.setpriority(os.PRIO_PROCESS, trainer, args.trainer_nice)
        if args.api_nice:
            os.setpriority(os.PRIO_PROCESS, server.pid, args.api_nice)
        print(f"training: job {job['id']}, trainer pid {trainer} nice "
              f"{os.getpriority(os.PRIO_PROCESS, trainer)}, API nice "
              f"{os.getpriority(os.PRIO_PROCESS, server.pid)}", flush=True)
        time.sleep(args.seconds)  # past the first steps and the first thread re-check
        windows = []
        nices = [int(value) for value in args.nice_sequence.split(",") if value.strip()]
        for index in range(2 * args.train_rounds):
            if nices:  # root may lower a nice value again
                os.setpriority(os.PRIO_PROCESS, trainer, nices[index // 2 % len(nices)])
            if index % 2:
                window = _measured("with load", server, trainer, lambda: concurrent(
                    server, args.clients, args.seconds, args.shared_client, rate=args.rate))
            else:
                window = _measured("idle", server, trainer, lambda: time.sleep(args.seconds))
            window.nice = os.getpriority(os.PRIO_PROCESS, trainer)
            windows.append(window)
        time.sleep(2)  # the last window's events reach the store
        events = _events(client, job["id"])
        client.post(f"/v1/fine_tuning/jobs/{job['id']}/cancel")
    for window in windows:
        # Events carry whole seconds: count the whole seconds inside each window.
        inside = [event for event in events
                  if int(window.start) + 1 <= event["created_at"] < int(window.end)]
        window.steps = sum(1 for event in inside if event["type"] == "metrics")
        window.threads = ", ".join(event["message"] for event in reversed(inside)
                                   if "thread" in event["message"])
    return windows


# main ----------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=51, help="files and jobs seeded (51)")
    parser.add_argument("--requests", type=int, default=500,
                        help="sequential requests per path and round (500)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--rate", type=float, default=0.0,
                        help="pace (b) and (c)'s clients to this many requests/s in all "
                             "(default: as fast as answered)")
    parser.add_argument("--shared-client", action="store_true",
                        help="one httpx.AsyncClient (default pool limits) for all clients")
    parser.add_argument("--skip-sequential", action="store_true")
    parser.add_argument("--skip-load", action="store_true")
    parser.add_argument("--skip-pauses", action="store_true")
    parser.add_argument("--pause-clients", type=int, default=100,
                        help="clients of (b2), each pausing ~5 s between requests (100)")
    parser.add_argument("--train", action="store_true", help="also (c): training beside the load")
    parser.add_argument("--train-rounds", type=int, default=2)
    parser.add_argument("--trainer-nice", type=int, default=0)
    parser.add_argument("--api-nice", type=int, default=0)
    parser.add_argument("--nice-sequence", default="",
                        help="trainer nice values to cycle through, one per idle+load pair of "
                             "windows (e.g. 0,10: compares them under the same other load)")
    args = parser.parse_args()
    print(f"CPU: {cpu_model()}; load average at start {os.getloadavg()[0]:.2f}", flush=True)
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        if not (args.skip_sequential and args.skip_load and args.skip_pauses):
            with running_server(folder, "--worker", "external") as server:
                with httpx.Client(base_url=server.base, timeout=60) as client:
                    seed(client, args.items)
                if not args.skip_sequential:
                    print(f"\n(a) sequential, {args.requests} requests x {args.rounds} rounds, "
                          f"{args.items} files and jobs stored")
                    print(f"{'request':<36} {'server CPU ms/request: min':>27} {'median':>7}")
                    for label, per_round in sequential(server, args.requests, args.rounds):
                        print(f"{label:<36} {min(per_round):>27.2f} "
                              f"{statistics.median(per_round):>7.2f}", flush=True)
                if not args.skip_load:
                    result = concurrent(server, args.clients, args.seconds, args.shared_client,
                                        rate=args.rate)
                    print_load(f"(b) {args.clients} concurrent clients"
                               + (f" paced to {args.rate:g} requests/s" if args.rate else ""),
                               result, args)
                if not args.skip_pauses:
                    # Each client idles about as long as both sides keep an idle connection
                    # (httpx: 5 s; uvicorn's default: 5 s): a request sent just as the server
                    # closes its side finds the connection gone.
                    result = concurrent(server, args.pause_clients, args.seconds,
                                        args.shared_client, pause=(4.9, 5.1))
                    print_load(f"(b2) {args.pause_clients} clients pausing 4.9-5.1 s between "
                               "requests", result, args)
        if args.train:
            windows = training(folder, args)
            print(f"\n(c) training beside the API, {args.clients} clients in the loaded windows "
                  "(CPU in cores' worth: seconds / window)")
            print(f"  {'window':<10} {'nice':>4} {'s':>4} {'steps':>6} {'trainer':>8} {'API':>6} "
                  f"{'others':>7} {'req/s':>7} {'p99 ms':>7} {'failed':>7}")
            for window in windows:
                seconds = window.end - window.start
                load = window.load
                print(f"  {window.label:<10} {window.nice:>4} {seconds:>4.0f} {window.steps:>6} "
                      f"{window.trainer_cpu / seconds:>8.2f} {window.api_cpu / seconds:>6.2f} "
                      f"{window.others_cpu / seconds:>7.2f} "
                      + (f"{load.ok / load.seconds:>7.1f} {load.percentile(0.99) * 1000:>7.0f} "
                         f"{sum(load.failures.values()):>7}" if load else "")
                      + (f"  [{window.threads}]" if window.threads else ""), flush=True)
    print(f"\nload average at end {os.getloadavg()[0]:.2f}")


def print_load(title: str, result: LoadResult, args: argparse.Namespace) -> None:
    total = sum(result.statuses.values())
    failed = sum(result.failures.values())
    print(f"\n{title}{' (one shared httpx client)' if args.shared_client else ''}, "
          f"{result.seconds:.1f} s, GET jobs / GET files alternating")
    p50, p99 = result.percentile(0.5) * 1000, result.percentile(0.99) * 1000
    slowest = max(result.latencies, default=0) * 1000
    print(f"  requests/s {result.ok / result.seconds:8.1f}   p50 {p50:7.1f} ms   p99 {p99:7.1f} ms"
          f"   max {slowest:7.1f} ms")
    print(f"  answered {total} ({dict(result.statuses)}), failed {failed} "
          f"({dict(result.failures) or 'none'})")
    print(f"  server CPU {result.server_cpu:.1f} s ({result.server_cpu * 1000 / max(total, 1):.2f} "
          f"ms/request), client CPU {result.client_cpu:.1f} s")
    print(f"  server log warnings/errors: {len(result.server_log)}")
    for line in result.server_log[:10]:
        print(f"    {line}")


if __name__ == "__main__":
    main()
