"""The CPU thread rule: the cores other processes leave free, at least one, re-checked."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tunegate.training import threads
from tunegate.training.threads import CpuSample, ThreadGovernor, choose_threads, others_busy_cores


@pytest.mark.parametrize(("others", "expected"), [
    (0.0, 2),   # idle machine: both cores
    (1.0, 1),   # another process keeps one core busy
    (0.3, 1),   # a core 30 % busy is not free
    (0.2, 2),   # ... one 20 % busy is (SLACK)
    (5.0, 1),   # overloaded: never below one
])
def test_threads_follow_the_free_cores(others: float, expected: int) -> None:
    assert choose_threads(allowed=2, host_cores=2, others_busy=others) == expected


def test_affinity_caps_the_count_on_a_big_host() -> None:
    assert choose_threads(allowed=4, host_cores=64, others_busy=30.0) == 4


def test_our_own_cpu_time_is_not_counted_as_others() -> None:
    before = CpuSample(wall=0.0, host_busy=100.0, own=10.0)
    after = CpuSample(wall=10.0, host_busy=125.0, own=25.0)  # 25 busy-s, 15 of them ours
    assert others_busy_cores(before, after) == pytest.approx(1.0)
    assert others_busy_cores(before, CpuSample(0.1, 100.0, 10.0)) is None  # window too short
    assert others_busy_cores(CpuSample(0.0, None, 0.0), after) is None


def test_the_host_clock_reads_on_this_machine() -> None:
    sample = threads.sample_cpu()
    assert sample.host_busy is None or sample.host_busy > 0


@pytest.mark.model
def test_governor_rechecks_at_most_every_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("torch")
    monkeypatch.delenv(threads.ENV, raising=False)
    monkeypatch.setattr(threads, "allowed_cores", lambda: 2)
    monkeypatch.setattr(threads.os, "cpu_count", lambda: 2)
    samples = iter([
        CpuSample(0.0, 0.0, 0.0),
        CpuSample(2.0, 3.0, 1.0),  # start: others used 1 core during loading -> 1 thread
        CpuSample(5.0, 5.0, 3.0),  # too soon to look again
        CpuSample(30.0, 30.0, 28.0),  # others used 0.08 cores since start -> 2 threads
        CpuSample(31.0, 31.0, 29.0),
    ])
    governor = ThreadGovernor(sample=lambda: next(samples))
    assert governor.start() == 1
    assert governor.tick() is None
    assert governor.tick() == 2
    assert governor.tick() is None


@pytest.mark.model
def test_a_short_start_window_is_measured_not_read_from_the_load_average(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A standby trainer loads a cached model in ~0.4 s. A quiet machine whose 1-minute load
    average still shows the run before (2.0) starts on 2 threads; one where others keep a core
    busy during those 0.4 s starts on 1."""
    pytest.importorskip("torch")
    monkeypatch.delenv(threads.ENV, raising=False)
    monkeypatch.setattr(threads, "allowed_cores", lambda: 2)
    monkeypatch.setattr(threads.os, "cpu_count", lambda: 2)
    monkeypatch.setattr(ThreadGovernor, "_apply", lambda self: None)
    quiet = iter([CpuSample(0.0, 0.0, 0.0), CpuSample(0.4, 0.41, 0.4)])
    assert ThreadGovernor(sample=lambda: next(quiet), load=lambda: 2.0).start() == 2
    busy = iter([CpuSample(0.0, 0.0, 0.0), CpuSample(0.4, 0.8, 0.4)])
    assert ThreadGovernor(sample=lambda: next(busy), load=lambda: 0.0).start() == 1
    # Too short to measure at all (0.1 s): the load average decides.
    instant = iter([CpuSample(0.0, 0.0, 0.0), CpuSample(0.1, 0.1, 0.1)])
    assert ThreadGovernor(sample=lambda: next(instant), load=lambda: 2.0).start() == 1


@pytest.mark.model
def test_a_pinned_count_never_changes(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("torch")
    monkeypatch.setenv(threads.ENV, "1")
    governor = ThreadGovernor(sample=lambda: CpuSample(0.0, 0.0, 0.0))
    assert governor.start() == 1
    assert governor.tick() is None


@pytest.mark.model
def test_threads_go_within_seconds_and_come_back_after_a_quiet_while(
        monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("torch")
    monkeypatch.delenv(threads.ENV, raising=False)
    monkeypatch.setattr(threads, "allowed_cores", lambda: 2)
    monkeypatch.setattr(threads.os, "cpu_count", lambda: 2)
    monkeypatch.setattr(ThreadGovernor, "_apply", lambda self: None)
    samples = iter([
        CpuSample(0.0, 0.0, 0.0),
        CpuSample(2.0, 4.0, 4.0),  # start: a quiet machine -> 2 threads
        CpuSample(3.0, 6.0, 6.0),  # too soon to look again
        CpuSample(8.0, 20.0, 14.0),  # others took a core's worth since 2 s -> 1 thread now
        CpuSample(14.0, 26.0, 20.0),  # quiet again for 6 s: not long enough for a thread
        CpuSample(29.0, 41.0, 35.0),  # quiet for 21 s -> 2 threads
        CpuSample(35.0, 53.0, 47.0),
    ])
    governor = ThreadGovernor(sample=lambda: next(samples))
    assert governor.start() == 2
    assert [governor.tick() for _ in range(5)] == [None, 1, None, 2, None]


def test_the_trainer_nice_setting_is_honoured() -> None:
    show = ("from tunegate.training.threads import apply_priority; import os; "
            "print(apply_priority(), os.getpriority(os.PRIO_PROCESS, 0))")
    ours = os.getpriority(os.PRIO_PROCESS, 0)
    wanted = min(19, ours + 3)  # a higher nice value: any user may take it
    for value, expected in ((str(wanted), f"{wanted} {wanted}"), ("", f"None {ours}"),
                            ("high", f"None {ours}")):
        env = {**os.environ, threads.NICE_ENV: value}
        ran = subprocess.run([sys.executable, "-c", show], env=env, capture_output=True,
                             text=True, check=True)
        assert ran.stdout.split() == expected.split(), ran.stderr
