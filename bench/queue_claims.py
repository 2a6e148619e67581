"""How many jobs per second the PostgreSQL queue hands out, with 1, 4 and 16 worker processes.

Two measures per worker count, each on a fresh database holding ``--jobs`` jobs in
``validating_files`` (created through the service, as ``POST /v1/fine_tuning/jobs`` does):

- ``claim``: each process only claims (``Store.claim_job``: ``SELECT … FOR UPDATE SKIP LOCKED``
  and the owning ``UPDATE``, one transaction) until the queue is empty: the queue's own ceiling.
- ``validate``: each process runs the real worker stage (``Worker.validate_next``: claim, read
  the file line by line, two events, the ``queued`` transition, disown): validation-only jobs,
  what a ``TUNEGATE_WORKER_STAGES=validate`` worker does.

The processes start, connect and wait at a barrier; the clock runs from their release to the
last one finding the queue empty, so imports and connection set-up are not counted. The
database server runs on the same machine and shares its cores with the workers.

    .venv/bin/python bench/queue_claims.py                     # a throwaway server (tests/postgres.py)
    .venv/bin/python bench/queue_claims.py --database-url postgresql+psycopg://u:p@host/postgres

``--database-url`` names a server whose user may create databases (one per measurement,
dropped afterwards).
"""

from __future__ import annotations

import argparse
import io
import multiprocessing
import os
import platform
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests import postgres  # noqa: E402
from tunegate.settings import Settings  # noqa: E402

EXAMPLES = 12  # a small valid training file: validation reads every line of it


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


@contextmanager
def server(url: str | None) -> Iterator[str]:
    if url:
        yield url
        return
    programs = postgres.server_programs()
    if programs is None:
        raise SystemExit(postgres.HOW_TO_GET_IT)
    started = postgres.ThrowawayPostgres.start(programs)
    try:
        yield started.url()
    finally:
        started.stop()


def training_bytes() -> bytes:
    import json

    rows = [{"messages": [{"role": "user", "content": f"What is {i} plus {i}?"},
                          {"role": "assistant", "content": f"{i} plus {i} is {2 * i}."}]}
            for i in range(EXAMPLES)]
    return "".join(json.dumps(row) + "\n" for row in rows).encode()


def fill_queue(settings: Settings, jobs: int) -> None:
    from tunegate.api.app import build_service
    from tunegate.api.service import Upload
    from tunegate.domain.catalog import EMBEDDED_MODEL_ID

    service = build_service(settings)
    try:
        upload = Upload("train.jsonl", io.BytesIO(training_bytes()), "fine-tune", None)
        file_id = service.files.upload("default", upload).id
        for _ in range(jobs):
            service.jobs.create("default", {"model": EMBEDDED_MODEL_ID, "training_file": file_id})
    finally:
        service.store.close()


def work(settings: Settings, mode: str, index: int, ready: Any, go: Any, out: Any) -> None:
    """One worker process: connect, wait for ``go``, empty the queue, report."""
    from tunegate.api.app import build_service
    from tunegate.domain.jobs import JobStatus
    from tunegate.worker.loop import Worker

    service = build_service(settings)
    worker = Worker(service, worker_id=f"bench-{index}")
    service.store.owned_jobs()  # the pool's connection is open before the clock starts
    ready.release()
    go.wait()
    done = 0
    if mode == "claim":
        while service.store.claim_job([JobStatus.VALIDATING_FILES], worker.worker_id,
                                      time.time()) is not None:
            done += 1
    else:
        while worker.validate_next():
            done += 1
    out.put((done, time.monotonic()))
    service.store.close()


def measure(server_url: str, mode: str, workers: int, jobs: int) -> tuple[float, int]:
    database = postgres.create_database(server_url)
    try:
        with tempfile.TemporaryDirectory(prefix="tunegate-bench-") as folder:
            settings = replace(Settings(data_dir=Path(folder)), database_url=database,
                               max_active_jobs=jobs + 1, poll_interval=0.01)
            fill_queue(settings, jobs)
            context = multiprocessing.get_context("spawn")
            ready, go, out = context.Semaphore(0), context.Event(), context.Queue()
            processes = [context.Process(target=work, args=(settings, mode, i, ready, go, out))
                         for i in range(workers)]
            for process in processes:
                process.start()
            for _ in processes:
                ready.acquire()
            start = time.monotonic()
            go.set()
            results = [out.get(timeout=600) for _ in processes]
            for process in processes:
                process.join(timeout=60)
            claimed = sum(count for count, _ in results)
            return max(end for _, end in results) - start, claimed
    finally:
        postgres.drop_database(database)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", help="a server to use instead of a throwaway one")
    parser.add_argument("--jobs", type=int, default=1000, help="jobs per measurement")
    parser.add_argument("--workers", default="1,4,16", help="worker counts, comma-separated")
    parser.add_argument("--modes", default="claim,validate", help="claim, validate or both")
    args = parser.parse_args()
    counts = [int(n) for n in args.workers.split(",")]
    print(f"CPU: {cpu_model()}, {os.cpu_count()} cores; load average before: "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    with server(args.database_url) as url:
        print(f"{'mode':<9} {'workers':>7} {'jobs':>6} {'seconds':>8} {'jobs/s':>8}")
        for mode in args.modes.split(","):
            for count in counts:
                seconds, claimed = measure(url, mode, count, args.jobs)
                assert claimed == args.jobs, (claimed, args.jobs)  # each job exactly once
                print(f"{mode:<9} {count:>7} {claimed:>6} {seconds:>8.2f} "
                      f"{claimed / seconds:>8.1f}", flush=True)
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
