"""Generating ``n`` choices together: every item of every generator, each generator closed."""

from __future__ import annotations

import threading
from collections.abc import Generator

import pytest

from tunegate.serving.fanout import interleave


class Recorded:
    """Generators that count how many were closed and which threads ran at once."""

    def __init__(self, parties: int):
        self.closed = 0
        self.together = threading.Barrier(parties, timeout=10)

    def make(self, name: str, count: int, meet: bool = True) -> Generator[str, None, None]:
        try:
            if meet:  # every generator must be running at the same time to pass this
                self.together.wait()
            for index in range(count):
                yield f"{name}{index}"
        finally:
            self.closed += 1


def test_all_items_of_all_generators_come_with_their_index() -> None:
    recorded = Recorded(3)
    starts = [lambda name=name: recorded.make(name, 3) for name in "abc"]
    items = list(interleave(starts))
    assert sorted(items) == sorted((i, f"{n}{k}") for i, n in enumerate("abc") for k in range(3))
    for index, name in enumerate("abc"):  # each generator's own order is kept
        assert [item for i, item in items if i == index] == [f"{name}{k}" for k in range(3)]
    assert recorded.closed == 3


def test_an_error_in_one_is_raised_and_every_generator_is_closed() -> None:
    recorded = Recorded(2)

    def failing() -> Generator[str, None, None]:
        yield from recorded.make("x", 1)
        raise RuntimeError("model died")

    with pytest.raises(RuntimeError, match="model died"):
        list(interleave([failing, lambda: recorded.make("a", 1000)]))
    assert recorded.closed == 2


def test_closing_early_closes_them_all() -> None:
    recorded = Recorded(2)
    merged = interleave([lambda: recorded.make("a", 10**6), lambda: recorded.make("b", 10**6)])
    next(merged)
    merged.close()
    assert recorded.closed == 2


def test_one_generator_runs_without_threads() -> None:
    recorded = Recorded(1)
    assert list(interleave([lambda: recorded.make("a", 2, meet=False)])) == [(0, "a0"), (0, "a1")]
    assert recorded.closed == 1
