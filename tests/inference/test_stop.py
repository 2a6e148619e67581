"""Stop sequences: where the text is cut, and how much of its end must be held back while
streaming (it might still become a stop sequence)."""

from __future__ import annotations

import pytest

from tunegate.inference import _first_stop, _stop_prefix_length


@pytest.mark.parametrize(("text", "stop", "cut"), [
    ("Paris. Then", ["."], 5),
    ("a. b! c", ["!", "."], 1),  # the earliest match wins, whichever sequence it is
    ("no stop here", ["\n\n"], None),
    ("ignore empty", [""], None),
])
def test_first_stop(text: str, stop: list[str], cut: int | None) -> None:
    assert _first_stop(text, stop) == cut


@pytest.mark.parametrize(("text", "stop", "held"), [
    ("Paris is", ["User:"], 0),
    ("Paris. U", ["User:"], 1),
    ("Paris. Use", ["User:"], 3),
    ("abcab", ["abd"], 2),
    ("xa", ["ab", "xab"], 2),  # the longest possible beginning is kept
    ("anything", [], 0),
])
def test_stop_prefix_length(text: str, stop: list[str], held: int) -> None:
    assert _stop_prefix_length(text, stop) == held
