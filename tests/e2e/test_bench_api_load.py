"""bench/api_load.py still runs against a real server (a tiny run; timings printed, never
asserted: bench/README.md has the measured numbers)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_api_load_measures_every_part() -> None:
    done = subprocess.run(
        [sys.executable, "bench/api_load.py", "--items", "3", "--requests", "20", "--rounds", "1",
         "--clients", "5", "--seconds", "2", "--pause-clients", "3"],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    out = done.stdout
    for request in ("GET /v1/models", "GET /v1/fine_tuning/jobs?limit=20", "GET /v1/files"):
        assert request in out
    assert "(b) 5 concurrent clients" in out and "(b2) 3 clients pausing" in out
    assert out.count("failed 0 (none)") == 2, out
