"""The training benchmark still runs (its --quick mode): the seed recipe and tunegate's trainer
(float32, and its chosen dtype) train, and it compares them. On fewer tokens than --quick's
1,500 (each recipe a step or two): the smoke test proves the recipes run and the report is
written, not the numbers, which bench/README.md measures.

Timings are printed, never asserted (bench/README.md has the measured numbers).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import TEST_DATA

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow

TOKENS = 400  # training tokens per recipe


def test_train_throughput_quick_trains_every_recipe(model_cache: Path) -> None:
    # The session's converted bases (tests/conftest.py): converting again would take ~25 s.
    # The benchmark reads ../shared/data by default; its --quick run needs only the GSM8K
    # train/validation pair, whose slices in tests/data are enough for 1,500 tokens.
    done = subprocess.run(
        [sys.executable, "bench/train_throughput.py", "--quick", "--tokens", str(TOKENS),
         "--cache-dir", str(model_cache)],
        cwd=ROOT, capture_output=True, text=True, timeout=900, check=False,
        env={**os.environ, "TUNEGATE_SHARED_DATA": str(TEST_DATA)})
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    rows = {line.split()[0]: line.split() for line in done.stdout.splitlines()
            if line.startswith(("seed ", "tunegate"))}
    assert set(rows) == {"seed", "tunegate-fp32", "tunegate"}, done.stdout
    assert rows["tunegate-fp32"][1] == "fp32" and rows["tunegate"][1] in ("fp32", "bf16")
    for recipe, cells in rows.items():
        useful_tokens = int(cells[3])
        assert useful_tokens >= TOKENS, (recipe, cells)
    assert "useful tokens/s ratio tunegate/seed" in done.stdout
