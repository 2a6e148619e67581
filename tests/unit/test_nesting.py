"""``too_deep`` judges JSON nesting from the bytes alone, exactly for valid JSON: strings (with
their escapes) do not nest, objects and arrays do, and a flat body of many brackets is not deep."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tunegate.api.nesting import MAX_DEPTH, too_deep


def nested(depth: int, *, kind: str = "list") -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value] if kind == "list" else {"k": value}
    return value


def encoded(value: Any) -> bytes:
    return json.dumps(value).encode()


@pytest.mark.parametrize("kind", ["list", "dict"])
def test_the_limit_passes_one_more_level_is_too_deep(kind: str) -> None:
    assert not too_deep(encoded(nested(MAX_DEPTH, kind=kind)))
    assert too_deep(encoded(nested(MAX_DEPTH + 1, kind=kind)))


def test_objects_and_arrays_count_alike() -> None:
    mixed = {"a": [{"b": [{"c": [1]}]}]}  # 6 levels
    assert not too_deep(encoded(mixed), limit=6)
    assert too_deep(encoded(mixed), limit=5)


def test_brackets_inside_strings_do_not_nest() -> None:
    for text in ["[" * 1000, "]" * 1000 + "[" * 1000, '\\"[[[[', '\\\\', '"' * 50 + "{{{{"]:
        body = encoded({"s": [text, text], "t": nested(10)})  # 11 levels with the outer {}
        assert not too_deep(body, limit=11), text
        assert too_deep(body, limit=10), text


def test_an_escaped_backslash_ends_before_the_quote() -> None:
    # "\\" is a whole string: the quote after the two backslashes closes it.
    body = b'[["\\\\", [[1]]]]'
    assert json.loads(body) == [["\\", [[1]]]]
    assert not too_deep(body, limit=4)
    assert too_deep(body, limit=3)


def test_many_brackets_side_by_side_are_shallow() -> None:
    flat = encoded([[{}] for _ in range(10_000)])
    assert not too_deep(flat, limit=3)
    assert too_deep(flat, limit=2)


def test_unclosed_openers_count_as_nesting() -> None:
    # Invalid JSON, but json.loads would still recurse into every opener before failing.
    assert too_deep(b"[[]," * (MAX_DEPTH + 1))
    assert too_deep(b"[" * 5000)
    assert not too_deep(b"]" * 5000 + b"[" * 3)
