"""This machine's measured training speed, by base model size: what a duration estimate uses.

A job's duration is its tokens to train at the speed a LoRA step reaches on a base of that
size, plus the seconds a run spends outside its steps (loading or converting the base,
exporting the adapter). Both differ by machine and by base size (a 135M base keeps a CPU
busier per parameter than a 3B one), so they are measured: after each run that trains, the
worker records the steps' speed as FLOP/s (4 × parameters × tokens/s, as
tunegate.training.estimate counts them) and the run's other seconds, under the base's parameter
count and this host's name, in ``<data>/train-speed.json``. An estimate reads the record of
the nearest size (by ratio); before any, the defaults below, measured on a 2-core AMD EPYC
(bench/base_sizes.py).

The file is a hint, not a ledger: the latest run of a size replaces that size's record, and a
record lost to two workers writing at once is measured again by the next run.
"""

from __future__ import annotations

import json
import logging
import math
import os
import socket
from dataclasses import dataclass
from pathlib import Path

from tunegate.training.estimate import DTYPE_BYTES, FLOPS_PER_PARAM_TOKEN

log = logging.getLogger("tunegate.train_speed")

FILE_NAME = "train-speed.json"
# A LoRA step on CPU before any run is measured: SmolLM2-135M in bfloat16 reached 128 GFLOP/s
# on a loaded 2-core AMD EPYC, the 1B shape about 100 (bench/base_sizes.py).
DEFAULT_FLOPS = 100e9
# A run's seconds outside its steps before any is measured: the process and imports, then the
# base read at about this rate (the 1B shape's 2.8 GiB copy loaded in about 9 s).
DEFAULT_START_SECONDS = 5.0
DEFAULT_LOAD_BYTES_PER_SECOND = 300e6


@dataclass(frozen=True)
class Speed:
    """How fast a run on a base of ``n_params`` parameters went."""

    n_params: int
    flops: float  # FLOP/s of the training steps
    overhead_seconds: float  # the rest of the run: start-up, conversion, export


def default(n_params: int) -> Speed:
    """The speed assumed before any run of this host is measured (its base read in bfloat16)."""
    weight_bytes = n_params * DTYPE_BYTES["bfloat16"]
    return Speed(n_params, DEFAULT_FLOPS,
                 DEFAULT_START_SECONDS + weight_bytes / DEFAULT_LOAD_BYTES_PER_SECOND)


def _path(data_dir: Path) -> Path:
    return data_dir / FILE_NAME


def _read(data_dir: Path) -> dict[str, dict[str, dict[str, float]]]:
    """Each host's records; a host's entry that is not an object (a file of another version,
    or edited by hand) is left out, to be replaced by that host's next record."""
    try:
        data = json.loads(_path(data_dir).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {host: records for host, records in data.items() if isinstance(records, dict)}


def measured(data_dir: Path, n_params: int) -> Speed | None:
    """This host's record nearest in size to ``n_params``, or None before any."""
    records = _read(data_dir).get(socket.gethostname(), {})
    speeds = []
    for size, record in records.items():
        try:
            speeds.append(Speed(int(size), float(record["flops"]),
                                float(record["overhead_seconds"])))
        except (KeyError, TypeError, ValueError):
            continue  # a record of another version: ignored, replaced by the next run
    if not speeds:
        return None
    return min(speeds, key=lambda speed: abs(math.log(speed.n_params / n_params)))


def record(data_dir: Path, speed: Speed) -> None:
    """Keep ``speed`` as this host's record for its size (written whole, then renamed)."""
    data = _read(data_dir)
    data.setdefault(socket.gethostname(), {})[str(speed.n_params)] = {
        "flops": round(speed.flops), "overhead_seconds": round(speed.overhead_seconds, 1)}
    path = _path(data_dir)
    staged = path.with_name(f".{FILE_NAME}.{os.getpid()}")
    try:
        staged.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
        os.replace(staged, path)
    except OSError as exc:  # a full disk: the next run measures again
        log.warning("could not record the training speed in %s: %s", path, exc)
        staged.unlink(missing_ok=True)


def from_run(n_params: int, tokens_per_second: list[float], trained_tokens: int,
             wall_seconds: float) -> Speed | None:
    """The speed a run reached: its steps' median tokens/s as FLOP/s, and its wall time less
    the steps' time as overhead; None for a run without a step's speed."""
    rates = sorted(rate for rate in tokens_per_second if rate > 0)
    if not rates or trained_tokens <= 0:
        return None
    median = rates[len(rates) // 2]
    steps_seconds = trained_tokens / median
    return Speed(n_params, FLOPS_PER_PARAM_TOKEN * n_params * median,
                 max(0.0, wall_seconds - steps_seconds))
