"""How deeply a JSON text nests, judged on its bytes before anything parses it.

Python's ``json`` recurses once per ``[``/``{`` and fails with ``RecursionError`` near 1,000
levels, and jsonschema and ``repr`` (error messages) recurse further on what did parse, so a
body of brackets would crash whatever met it first. No OpenAI request needs more than a few
dozen levels (a tool's parameter schema is the deepest part: about two per schema level, and
OpenAI's structured outputs stop at 10), so bodies deeper than ``MAX_DEPTH`` are refused.

The check costs little next to the parse that follows it: two ``bytes.count`` calls settle
almost every body, and the rest is C-speed ``replace``, ``translate`` and ``split`` passes, most
of them over the brackets alone. Measured on 15-20 MB bodies, even the worst (megabytes of
brackets nested 63 deep) take less time than ``json.loads`` of the same bytes.
"""

from __future__ import annotations

MAX_DEPTH = 64

# Objects and arrays nest alike: their brackets are kept, all written as [ and ], and so are
# the quotes that delimit strings (brackets inside a string do not nest).
_AS_SQUARE = bytes.maketrans(b"{}", b"[]")
_NOT_STRUCTURE = bytes(sorted(set(range(256)) - set(b'[]{}"')))
_PAIR = b"[]"


def too_deep(data: bytes, limit: int = MAX_DEPTH) -> bool:
    """Whether the JSON text ``data`` (UTF-8) opens more than ``limit`` arrays or objects inside
    one another. Exact for valid JSON; for invalid JSON (which fails to parse anyway) it may
    count unclosed brackets as nesting."""
    if data.count(b"[") + data.count(b"{") <= limit:
        return False  # cannot nest deeper than its number of openers: most bodies stop here
    # Escaped backslashes, then escaped quotes, go first (left to right, as JSON reads them):
    # the quotes left then alternate, opening and closing strings. Two adjacent ones enclose
    # nothing, or nothing lies between them outside: dropping them keeps that alternation (and
    # removes most strings at C speed). Every other piece between the rest is outside strings.
    unescaped = data.replace(b"\\\\", b"").replace(b'\\"', b"")
    structure = unescaped.translate(_AS_SQUARE, _NOT_STRUCTURE).replace(b'""', b"")
    brackets = b"".join(structure.split(b'"')[::2])
    if b"[" * (limit + 1) in brackets:
        return True  # the plain attack, found in one search
    return _depth(brackets, limit) > limit


def _depth(brackets: bytes, limit: int) -> int:
    """Nesting of a text of [ and ], counted up to ``limit + 1``.

    Each pass removes every innermost pair ``[]``, so a well-nested text of depth ``d`` is gone
    after ``d`` passes; what no pass removes has the form ``]]…[[``, whose openers are never
    closed and may nest around everything else.
    """
    passes = 0
    while True:
        peeled = brackets.replace(_PAIR, b"")
        if len(peeled) == len(brackets):
            return passes + brackets.count(b"[")
        if passes == limit:
            return limit + 1
        brackets = peeled
        passes += 1
