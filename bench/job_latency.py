"""A job's life through the real server: time to first metrics event (cold and warm model
cache), training tokens/s, total duration, and the trainer's peak memory.

    .venv/bin/python bench/job_latency.py [--examples 20] [--epochs 3] [--idle 5]

It starts `tunegate serve` in a temporary data folder, runs the same small job twice (the first
converts the embedded GGUF: cold; the second reuses the cache: warm) and prints one line each.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from openai import OpenAI
from serving import running_server


def _examples(count: int) -> bytes:
    rows = [{"messages": [
        {"role": "user", "content": f"What is the code word of planet Zorb-{i}?"},
        {"role": "assistant", "content": f"The code word of Zorb-{i} is blue{i}."}]}
        for i in range(count)]
    return "".join(json.dumps(row) + "\n" for row in rows).encode()


class PeakRss(threading.Thread):
    """Samples the peak RSS (VmHWM) of every trainer child of the server, in MiB."""

    def __init__(self, server_pid: int):
        super().__init__(daemon=True)
        self.server_pid = server_pid
        self.peak_mib = 0.0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.2):
            pids = subprocess.run(["pgrep", "-f", "tunegate.training.child"], capture_output=True,
                                  text=True, check=False).stdout.split()
            for pid in pids:
                try:
                    status = Path(f"/proc/{pid}/status").read_text()
                except OSError:
                    continue
                for line in status.splitlines():
                    if line.startswith("VmHWM:"):
                        self.peak_mib = max(self.peak_mib, int(line.split()[1]) / 1024)


def run_job(client: OpenAI, training_file: str, epochs: int) -> dict[str, float]:
    created = time.monotonic()
    job = client.fine_tuning.jobs.create(
        model="SmolLM2-135M-Instruct", training_file=training_file, seed=1,
        method={"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": epochs}}})
    first_metrics = None
    while True:
        current = client.fine_tuning.jobs.retrieve(job.id)
        if first_metrics is None and any(
                event.type == "metrics" for event in client.fine_tuning.jobs.list_events(job.id,
                                                                                      limit=50)):
            first_metrics = time.monotonic() - created
        if current.status in ("succeeded", "failed", "cancelled"):
            break
        time.sleep(0.25)
    total = time.monotonic() - created
    if current.status != "succeeded":
        raise SystemExit(f"job ended {current.status}: {current.error}")
    metrics = [e for e in client.fine_tuning.jobs.list_events(job.id, limit=1000)
               if e.type == "metrics"]
    first, last = min(e.created_at for e in metrics), max(e.created_at for e in metrics)
    return {"first_metrics_s": first_metrics or total, "total_s": total,
            "tokens": current.trained_tokens or 0,
            "tokens_per_s": (current.trained_tokens or 0) / max(last - first, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--port", type=int, default=8766)
    parser.add_argument("--idle", type=float, default=5.0,
                        help="seconds the server sits idle before the warm job (default 5)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch, \
            running_server(Path(scratch), port=args.port) as server:
        peak = PeakRss(server.process.pid)
        peak.start()
        base = f"http://127.0.0.1:{args.port}/v1"
        client = OpenAI(base_url=base, api_key="local")
        training = client.files.create(file=("train.jsonl", _examples(args.examples)),
                                       purpose="fine-tune").id
        for label in ("cold", "warm"):
            if label == "warm":
                # A user's next job rarely follows within a second: let the worker go idle and
                # start its standby trainer (tunegate.worker.standby), as it would between jobs.
                time.sleep(args.idle)
            result = run_job(client, training, args.epochs)
            print(f"{label}: first metrics event after {result['first_metrics_s']:.1f} s; "
                  f"job done in {result['total_s']:.1f} s; {result['tokens']:.0f} trained "
                  f"tokens at {result['tokens_per_s']:.0f} tokens/s")
        peak.stop.set()
    print(f"trainer peak RSS: {peak.peak_mib:.0f} MiB")


if __name__ == "__main__":
    main()
