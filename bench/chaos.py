"""Random kill -9s during real training: are jobs lost, steps recorded twice, files left behind?

    .venv/bin/python bench/chaos.py [--kills 12] [--seed 1] [--jobs 2] [--faults worker,disk]

Runs a real `tunegate serve` (embedded worker, the embedded model) and trains ``--jobs`` small
jobs one after the other. While they train it kills, at random moments 2-12 s apart, a random
victim: the worker, the trainer child, or the whole process group (then starts `serve` again
on the same data folder). Recovery time is from the kill until the job records a step it had not
recorded before (or ends): it includes the restart and the steps redone since the last saved
state (up to an epoch). At the end it prints, per kind of kill, how many and
the recovery times, and over all jobs: jobs not succeeded (lost), metrics steps recorded twice
or missing, duplicate checkpoints, and files in the data folder that no row owns.

The ``disk`` fault fills the data folder's disk to the last byte for 3-8 s, then frees it. The
data folder is then a tmpfs of ``--disk-mib`` (the bench runs itself again in a user and mount
namespace, with ``unshare``, to mount it). A job whose trainer saved its state while the disk
was full ends ``failed`` with ``insufficient_storage``: that is a truthful end, counted apart
from the lost jobs (lost: any other end, or a job still not ended). Its recovery time is from
the fill until the job records a new step or ends.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from serving import free_port

ROOT = Path(__file__).resolve().parents[1]
BASE = "SmolLM2-135M-Instruct"
TERMINAL = {"succeeded", "failed", "cancelled"}
VICTIMS = ("worker", "trainer", "group", "disk")
KILLS = ("worker", "trainer", "group")
DISK_FULL_CODE = "insufficient_storage"



def _children(parent: int, pattern: str) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(parent), "-f", pattern], capture_output=True,
                         text=True, check=False).stdout.split()
    return [int(pid) for pid in out]


@dataclass
class Server:
    data: Path
    cache: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    log: Path | None = None  # where serve writes its log (default: beside the data folder)

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> None:
        env = {**os.environ, "TUNEGATE_MODEL_CACHE": str(self.cache),
               "TUNEGATE_HEARTBEAT_TIMEOUT": "600"}  # every takeover here must be the fast one
        log = (self.log or self.data.parent / "serve.log").open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tunegate", "serve", "--port", str(self.port), "--data",
             str(self.data)], stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT,
            start_new_session=True)
        for _ in range(600):
            try:
                httpx.get(f"{self.api}/models", timeout=1)
                return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise SystemExit("serve did not start; see serve.log")

    def kill(self, victim: str) -> bool:
        """Kill the victim now; ``False`` when it is not there (e.g. no trainer between runs)."""
        assert self.process is not None
        if victim == "disk":
            self.fill_disk()
            return True
        if victim == "group":
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
            self.start()
            return True
        workers = _children(self.process.pid, "tunegate worker")
        if not workers:
            return False
        pids = workers if victim == "worker" else _children(workers[0], "tunegate.training.child")
        if not pids:
            return False
        os.kill(pids[0], signal.SIGKILL)
        return True

    @property
    def filler(self) -> Path:
        return self.data.parent / "filler"  # on the data folder's disk, outside the folder

    def fill_disk(self) -> None:
        """Write the filler until not one byte is left (large blocks, then single bytes)."""
        with open(self.filler, "ab", buffering=0) as file:
            for size in (1 << 20, 4096, 1):
                block = b"\0" * size
                try:
                    while True:
                        file.write(block)
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise

    def free_disk(self) -> None:
        self.filler.unlink(missing_ok=True)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=60)


def _training_file() -> bytes:
    rows = [{"messages": [{"role": "user", "content": f"What is the code word of planet Zorb-{i}?"},
                          {"role": "assistant", "content": f"The code word of Zorb-{i} is blue{i}."}]}
            for i in range(24)]
    return "".join(json.dumps(row) + "\n" for row in rows).encode()


class Api:
    def __init__(self, server: Server):
        self.server = server

    def _get(self, path: str) -> dict:
        for _ in range(300):  # the server may be restarting
            try:
                response = httpx.get(self.server.api + path, timeout=10)
                response.raise_for_status()
                return response.json()
            except httpx.HTTPError:
                time.sleep(0.2)
        raise SystemExit(f"GET {path} kept failing")

    def create_job(self) -> str:
        upload = httpx.post(f"{self.server.api}/files", data={"purpose": "fine-tune"},
                            files={"file": ("train.jsonl", _training_file())}, timeout=60)
        upload.raise_for_status()
        job = httpx.post(f"{self.server.api}/fine_tuning/jobs", timeout=60, json={
            "model": BASE, "training_file": upload.json()["id"], "method": {
                "type": "supervised", "supervised": {"hyperparameters": {
                    "n_epochs": 3, "batch_size": 4}}}})
        job.raise_for_status()
        return str(job.json()["id"])

    def status(self, job_id: str) -> str:
        return str(self._get(f"/fine_tuning/jobs/{job_id}")["status"])

    def error_code(self, job_id: str) -> str | None:
        error = self._get(f"/fine_tuning/jobs/{job_id}")["error"]
        return str(error["code"]) if error else None

    def error_message(self, job_id: str) -> str | None:
        error = self._get(f"/fine_tuning/jobs/{job_id}")["error"]
        return str(error["message"]) if error else None

    def steps(self, job_id: str) -> list[int]:
        events = self._get(f"/fine_tuning/jobs/{job_id}/events?limit=1000")["data"]
        return [e["data"]["step"] for e in reversed(events) if e["type"] == "metrics"]

    def checkpoint_steps(self, job_id: str) -> list[int]:
        data = self._get(f"/fine_tuning/jobs/{job_id}/checkpoints?limit=100")["data"]
        return [c["step_number"] for c in data]

    def file_ids(self) -> set[str]:
        return {f["id"] for f in self._get("/files?limit=10000")["data"]}


def _last_step(api: Api, job_id: str) -> int:
    steps = api.steps(job_id)
    return max(steps) if steps else 0


def _recovered(api: Api, job_id: str, before: int) -> bool:
    """Training went on: a step after ``before`` is recorded, or the job has ended."""
    return _last_step(api, job_id) > before or api.status(job_id) in TERMINAL


def run(kills: int, seed: int, jobs: int, workdir: Path, cache: Path,
        faults: tuple[str, ...] = KILLS, serve_log: Path | None = None) -> None:
    rng = random.Random(seed)
    server = Server(workdir / "data", cache, log=serve_log)
    server.start()
    api = Api(server)
    recoveries: dict[str, list[float]] = {victim: [] for victim in faults}
    job_ids: list[str] = []
    try:
        done_kills = 0
        while len(job_ids) < jobs or done_kills < kills:
            job_id = api.create_job()
            job_ids.append(job_id)
            while api.status(job_id) not in TERMINAL:
                time.sleep(rng.uniform(2, 12))
                if done_kills >= kills or api.status(job_id) in TERMINAL:
                    continue
                before = _last_step(api, job_id)
                victim = rng.choice(faults)
                killed_at = time.monotonic()
                if not server.kill(victim):
                    continue
                done_kills += 1
                if victim == "disk":
                    time.sleep(rng.uniform(3, 8))
                    server.free_disk()
                while not _recovered(api, job_id, before):
                    time.sleep(0.2)
                recoveries[victim].append(time.monotonic() - killed_at)
                print(f"kill {done_kills}: {victim} after step {before}, a new step (or the "
                      f"end: {api.status(job_id)}) {recoveries[victim][-1]:.1f} s later",
                      flush=True)
        report(api, server, job_ids, recoveries)
    finally:
        server.stop()


def report(api: Api, server: Server, job_ids: list[str],
           recoveries: dict[str, list[float]]) -> None:
    lost = duplicated = missing = duplicate_checkpoints = disk_full = 0
    for job_id in job_ids:
        status = api.status(job_id)
        steps = api.steps(job_id)
        if status != "succeeded":
            print(f"{job_id} {status} after step {max(steps, default=0)}: "
                  f"{api.error_code(job_id)}: {api.error_message(job_id)}")
        if status == "failed" and api.error_code(job_id) == DISK_FULL_CODE:
            disk_full += 1
        else:
            lost += status != "succeeded"
        duplicated += len(steps) - len(set(steps))
        missing += len(set(range(1, max(steps, default=0) + 1)) - set(steps))
        checkpoints = api.checkpoint_steps(job_id)
        duplicate_checkpoints += len(checkpoints) - len(set(checkpoints))
    time.sleep(1)
    files = set(os.listdir(server.data / "files"))
    stray_files = files - api.file_ids()
    stray_jobs = set(os.listdir(server.data / "jobs")) - set(job_ids)
    print("\nkills by victim: recovery seconds (kill -> next recorded progress)")
    for victim, times in recoveries.items():
        if times:
            print(f"  {victim:8} {len(times):3} kills, median {statistics.median(times):5.1f} s, "
                  f"max {max(times):5.1f} s")
    print(f"jobs: {len(job_ids)}, lost (not succeeded): {lost}, failed on the full disk "
          f"({DISK_FULL_CODE}): {disk_full}")
    print(f"metrics steps recorded twice: {duplicated}, missing: {missing}; "
          f"duplicate checkpoints: {duplicate_checkpoints}")
    print(f"files without a row: {len(stray_files)} {sorted(stray_files)[:5]}; "
          f"job folders without a job: {len(stray_jobs)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=12)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--model-cache", type=Path,
                        default=Path.home() / ".cache" / "tunegate" / "bench-model-cache")
    parser.add_argument("--faults", default=",".join(KILLS),
                        help=f"comma-separated, of {', '.join(VICTIMS)} (default: the kills)")
    parser.add_argument("--disk-mib", type=int, default=1024,
                        help="with the disk fault: the size of the data folder's tmpfs")
    parser.add_argument("--serve-log", type=Path, help="keep serve's log there")
    parser.add_argument("--inside", type=Path, help=argparse.SUPPRESS)  # the mounted tmpfs
    args = parser.parse_args()
    faults = tuple(args.faults.split(","))
    if unknown := set(faults) - set(VICTIMS):
        parser.error(f"unknown faults: {sorted(unknown)}")
    if "disk" in faults and args.inside is None:
        with tempfile.TemporaryDirectory() as scratch:
            sys.exit(_on_a_small_disk(Path(scratch), args.disk_mib))
    if args.inside is not None:
        run(args.kills, args.seed, args.jobs, args.inside, args.model_cache, faults,
            args.serve_log)
        return
    with tempfile.TemporaryDirectory() as scratch:
        run(args.kills, args.seed, args.jobs, Path(scratch), args.model_cache, faults,
            args.serve_log)


def _on_a_small_disk(scratch: Path, mib: int) -> int:
    """Run this bench again in a private mount namespace, its data on a fresh tmpfs."""
    if shutil.which("unshare") is None:
        raise SystemExit("the disk fault needs unshare (util-linux) and user namespaces")
    mount = scratch / "disk"
    mount.mkdir()
    return subprocess.call(
        ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c",
         'mount -t tmpfs -o size="$1" tmpfs "$2" && shift 2 && exec "$@"', "sh", f"{mib}m",
         str(mount), sys.executable, *sys.argv, "--inside", str(mount)])


if __name__ == "__main__":
    main()
