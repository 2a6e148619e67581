"""How many CPU threads training uses: the cores other processes leave idle, re-checked as it runs.

On a machine whose cores are busy with other work (the API server, llama.cpp inference, other
jobs), torch's default of one thread per core is the worst choice: every matmul ends at a
barrier where one thread waits for another that the OS has descheduled. Measured here on 2
cores with about two cores' worth of other load: 2 threads trained at 24 tokens/s, 1 thread at
131 (bench/README.md). On an idle machine 2 threads are ~1.7x faster than 1.

So the count is the number of cores others leave free: at least 1, at most the cores this
process may run on. "Others" is measured, not guessed from the lagging load average: the host's
busy CPU time (``/proc/stat``) minus this process's own CPU time, over the last window (model
loading at start, then while it trains). Without ``/proc/stat`` the 1-minute load average
stands in.

Measured on a 2-core Intel Xeon (AMX), SmolLM2-135M, GSM8K steps, 2 threads against 1, with
``others`` the cores' worth other processes used meanwhile: others 0.03-0.07: 329 vs 168-178
tokens/s in float32, 393 vs 269-280 in bfloat16; others 0.25: 310 vs 280 (bfloat16); others
0.9-1.1: 41-77 vs 178-230 (3-5x slower). Hence SLACK, and the start rule below.

The start window is short: a standby trainer (tunegate.worker.standby) has its imports done and
loads a cached model in well under a second. The first window therefore counts from
``MIN_START_WINDOW_SECONDS``; it used to need ``MIN_WINDOW_SECONDS`` like the others, and a
shorter one fell back to the 1-minute load average, which on an idle machine still carries the
run before (the seed recipe's 2 threads in bench/train_throughput.py, the previous job) and so
started a quiet machine on 1 thread, for ``RECHECK_SECONDS`` at least.

Threads go quickly and come back slowly: work that appears on our cores (the API answering a
burst of requests, say) is looked for every ``DROP_CHECK_SECONDS`` (between steps), since two
threads on a contended core make a third to a fifth of one thread's progress (above;
bench/README.md, api_load.py); a thread is added only when the machine has stayed quiet for
``RECHECK_SECONDS``, which also keeps the count from flapping (every change is an event in the
job's history).

``TUNEGATE_TRAIN_THREADS=N`` (or ``TrainerOptions.threads``) pins the count. Losses are bitwise
repeatable for a fixed thread count; a change of thread count mid-run may change the last bits.

``TUNEGATE_TRAINER_NICE=N`` runs the trainer at nice N (``apply_priority``). The default is the
API's own priority: with 50 clients hammering the API on 2 cores, a trainer at nice 5 made a
third of the progress it made at nice 0, at nice 10 none, for 1.4x / 1.8x the API's requests/s
(bench/README.md, api_load.py); the API then answered faster than before this rule at equal
priority. Whoever prefers the API's latency to the training's progress sets 10.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

ENV = "TUNEGATE_TRAIN_THREADS"
NICE_ENV = "TUNEGATE_TRAINER_NICE"
RECHECK_SECONDS = 20.0  # quiet this long before a thread is added
DROP_CHECK_SECONDS = 2.0  # how often to look for work that appeared on our cores
MIN_WINDOW_SECONDS = 0.5  # shorter windows are too coarse for /proc/stat's 10 ms ticks
# ... except the first: coarse (+-0.1 core over 0.2 s) beats the load average's last minute.
MIN_START_WINDOW_SECONDS = 0.2
SLACK = 0.25  # a core at most 25 % busy with other work still counts as free


@dataclass(frozen=True)
class CpuSample:
    """Wall clock, host busy CPU seconds (all cores; None if unknown), our CPU seconds."""

    wall: float
    host_busy: float | None
    own: float


def sample_cpu() -> CpuSample:
    """Read the clocks now."""
    return CpuSample(time.monotonic(), _host_busy_seconds(), time.process_time())


def allowed_cores() -> int:
    """Cores this process may run on (CPU affinity), at least 1."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def others_busy_cores(before: CpuSample, after: CpuSample,
                      min_window: float = MIN_WINDOW_SECONDS) -> float | None:
    """Cores' worth of CPU used by other processes between two samples (None if unknown:
    no host clock, or a window shorter than ``min_window`` seconds)."""
    window = after.wall - before.wall
    if before.host_busy is None or after.host_busy is None or window < min_window:
        return None
    others = (after.host_busy - before.host_busy) - (after.own - before.own)
    return max(0.0, others / window)


def choose_threads(allowed: int, host_cores: int, others_busy: float) -> int:
    """``floor(host_cores - others_busy + SLACK)`` clamped to ``1..allowed`` (pure)."""
    free = host_cores - others_busy
    return max(1, min(allowed, math.floor(free + SLACK)))


class ThreadGovernor:
    """Sets torch's CPU thread count at start and adjusts it at most every RECHECK_SECONDS.

    Create it before the slow start-up work (model loading): that period is the first window.
    """

    def __init__(self, fixed: int | None = None, sample: Callable[[], CpuSample] = sample_cpu,
                 load: Callable[[], float] = lambda: os.getloadavg()[0]):
        env = os.environ.get(ENV, "").strip()
        self.fixed = fixed or (int(env) if env.isdigit() and int(env) > 0 else None)
        self.allowed = allowed_cores()
        self.host_cores = max(self.allowed, os.cpu_count() or 1)
        self._sample, self._load = sample, load
        self._last = self._recent = sample()  # where the long and the short window start
        self.threads = 0

    def start(self) -> int:
        """Choose and apply the first thread count."""
        now = self._sample()
        self.threads = self.fixed or self._choose(self._last, now, MIN_START_WINDOW_SECONDS)
        self._last = self._recent = now
        self._apply()
        return self.threads

    def tick(self) -> int | None:
        """Call between steps; returns the new count when it changed, else ``None``."""
        if self.fixed:
            return None
        now = self._sample()
        if now.wall - self._recent.wall < DROP_CHECK_SECONDS:
            return None
        wanted = self._choose(self._recent, now)
        self._recent = now
        if wanted < self.threads:  # others are using our cores now: make way at once
            self._last = now
        elif now.wall - self._last.wall >= RECHECK_SECONDS:
            wanted = min(wanted, self._choose(self._last, now))  # quiet all along?
            self._last = now
        else:
            wanted = self.threads
        if wanted == self.threads:
            return None
        self.threads = wanted
        self._apply()
        return wanted

    def _choose(self, since: CpuSample, now: CpuSample,
                min_window: float = MIN_WINDOW_SECONDS) -> int:
        others = others_busy_cores(since, now, min_window)
        if others is None:  # no /proc/stat: the load average, minus our own threads
            others = max(0.0, self._load() - self.threads)
        return choose_threads(self.allowed, self.host_cores, others)

    def _apply(self) -> None:
        import torch

        torch.set_num_threads(self.threads)


def apply_priority(env: Mapping[str, str] = os.environ) -> int | None:
    """Set this process's nice value from ``TUNEGATE_TRAINER_NICE``; the value set, or None
    (unset, not a number, or a priority this user may not take: a warning on stderr)."""
    raw = env.get(NICE_ENV, "").strip()
    if not raw:
        return None
    try:
        value = int(raw)
        os.setpriority(os.PRIO_PROCESS, 0, value)
    except (ValueError, OSError) as exc:
        print(f"{NICE_ENV}={raw!r} not applied: {exc}", file=sys.stderr)
        return None
    return value


def _host_busy_seconds() -> float | None:
    try:
        with open("/proc/stat") as handle:
            fields = handle.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu":
        return None
    # user nice system idle iowait irq softirq steal ...: busy = all but idle and iowait
    ticks = [int(value) for value in fields[1:9]]
    busy = sum(ticks) - ticks[3] - ticks[4]
    return busy / os.sysconf("SC_CLK_TCK")
