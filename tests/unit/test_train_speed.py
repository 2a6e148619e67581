"""This machine's measured training speed (tunegate.worker.train_speed) and the duration
estimate it feeds (tunegate.worker.memory_plan.training_seconds)."""

from __future__ import annotations

import json
import socket
from dataclasses import replace
from pathlib import Path

import pytest

from tunegate.settings import Settings
from tunegate.training.estimate import ModelShape
from tunegate.worker import memory_plan, train_speed
from tunegate.worker.train_speed import Speed

SHAPE = ModelShape(n_params=1_000_000_000, hidden=2048, n_layers=16, intermediate=8192,
                   vocab=128_256, n_heads=32, n_kv_heads=8)


def test_a_run_speed_is_its_median_step_rate_and_the_rest_of_its_wall_time() -> None:
    speed = train_speed.from_run(1_000, [40.0, 10.0, 50.0], trained_tokens=1_000,
                                 wall_seconds=60.0)
    assert speed == Speed(1_000, 4 * 1_000 * 40.0, 60.0 - 1_000 / 40.0)
    # A run faster than its steps say (a clock step) has no negative overhead.
    fast = train_speed.from_run(1_000, [40.0], trained_tokens=1_000, wall_seconds=1.0)
    assert fast is not None and fast.overhead_seconds == 0.0
    assert train_speed.from_run(1_000, [], trained_tokens=1_000, wall_seconds=9.0) is None
    assert train_speed.from_run(1_000, [0.0], trained_tokens=1_000, wall_seconds=9.0) is None


def test_the_record_nearest_in_size_answers(tmp_path: Path) -> None:
    assert train_speed.measured(tmp_path, 10**9) is None
    train_speed.record(tmp_path, Speed(135_000_000, 128e9, 4.0))
    train_speed.record(tmp_path, Speed(1_200_000_000, 90e9, 12.0))
    assert train_speed.measured(tmp_path, 3_000_000_000) == Speed(1_200_000_000, 90e9, 12.0)
    assert train_speed.measured(tmp_path, 270_000_000) == Speed(135_000_000, 128e9, 4.0)
    # The latest run of a size replaces its record.
    train_speed.record(tmp_path, Speed(135_000_000, 100e9, 5.0))
    assert train_speed.measured(tmp_path, 200_000_000) == Speed(135_000_000, 100e9, 5.0)
    assert list(tmp_path.iterdir()) == [tmp_path / train_speed.FILE_NAME]  # no staged file left


def test_another_hosts_records_and_unreadable_ones_are_not_used(tmp_path: Path) -> None:
    path = tmp_path / train_speed.FILE_NAME
    path.write_text(json.dumps({"elsewhere": {"1000": {"flops": 1e9, "overhead_seconds": 1}},
                                socket.gethostname(): {"2000": {"flops": "fast"}}}))
    assert train_speed.measured(tmp_path, 1000) is None
    path.write_text("{not json")
    assert train_speed.measured(tmp_path, 1000) is None
    train_speed.record(tmp_path, Speed(1000, 2e9, 1.0))  # a broken file is replaced
    assert train_speed.measured(tmp_path, 1000) == Speed(1000, 2e9, 1.0)
    # This host's entry not an object: no record (an error here would fail every validation
    # and leave the job validating), and the next record replaces it.
    path.write_text(json.dumps({socket.gethostname(): [1, 2]}))
    assert train_speed.measured(tmp_path, 1000) is None
    train_speed.record(tmp_path, Speed(1000, 3e9, 1.0))
    assert train_speed.measured(tmp_path, 1000) == Speed(1000, 3e9, 1.0)


def test_the_duration_uses_the_measured_speed_else_the_default(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = replace(Settings(), data_dir=tmp_path)
    tokens = 10_000
    default = memory_plan.training_seconds(settings, SHAPE, tokens)
    steps = 4 * SHAPE.n_params * tokens / train_speed.DEFAULT_FLOPS
    load = train_speed.DEFAULT_START_SECONDS + 2 * SHAPE.n_params / 300e6
    assert default == pytest.approx(steps + load)
    train_speed.record(tmp_path, Speed(SHAPE.n_params, 50e9, 30.0))
    measured = memory_plan.training_seconds(settings, SHAPE, tokens)
    assert measured == pytest.approx(30.0 + 4 * SHAPE.n_params * tokens / 50e9)
