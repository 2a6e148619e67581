"""The lines of a JSONL file as text, whichever encoding a user's tool saved it in.

UTF-8 is the format; a byte order mark says otherwise: Windows tools (Notepad, PowerShell's
``Out-File``, Excel's "Unicode text") save UTF-16 with one, and some save UTF-8 with one. Any
other file that is not UTF-8 (Latin-1, UTF-16 without a mark) is refused with the line where
reading failed and the advice to save it as UTF-8, never with a codec's byte position.
"""

from __future__ import annotations

import codecs
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO

SAVE_AS_UTF_8 = ("JSONL files are read as UTF-8 (or UTF-16 with a byte order mark): save it as "
                 "UTF-8 and upload it again.")
CHUNK_BYTES = 1 << 20
# No line limit, for a reader of files that were measured when they were uploaded.
UNLIMITED = sys.maxsize // 4
_MARKS = ((codecs.BOM_UTF8, "utf-8"), (codecs.BOM_UTF16_LE, "utf-16-le"),
          (codecs.BOM_UTF16_BE, "utf-16-be"))


class UnreadableLine(ValueError):
    """A line that is not text in the file's encoding, or not JSON; ``line`` is 1-based."""

    def __init__(self, message: str, line: int):
        super().__init__(message)
        self.message = message
        self.line = line


class LineTooLong(ValueError):
    def __init__(self, line: int):
        super().__init__(f"line {line}")
        self.line = line


def text_lines(path: Path, max_line_bytes: int) -> Iterator[tuple[int, str]]:
    """Yield ``(line_number, text)`` for every line of ``path``, blank ones included.

    Raises ``UnreadableLine`` on a line that cannot be decoded and ``LineTooLong`` on one longer
    than ``max_line_bytes`` (in UTF-16, that many characters).
    """
    with path.open("rb") as source:
        encoding, mark = _encoding(source.read(3))
        source.seek(len(mark))
        if encoding == "utf-8":
            yield from _utf_8_lines(source, max_line_bytes)
        else:
            yield from _utf_16_lines(source, encoding, max_line_bytes)


def parse_line(text: str, line: int) -> object:
    """``text`` as JSON; a syntax error says where on the line, not json's "line 1 column N"."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise UnreadableLine(f"Line {line} is not valid JSON: {exc.msg} (at character "
                             f"{exc.colno}). Expected JSONL: one JSON object per line.",
                             line) from None


def _encoding(head: bytes) -> tuple[str, bytes]:
    return next(((encoding, mark) for mark, encoding in _MARKS if head.startswith(mark)),
                ("utf-8", b""))


def _utf_8_lines(source: IO[bytes], limit: int) -> Iterator[tuple[int, str]]:
    number = 0
    while raw := source.readline(limit + 1):
        number += 1
        if len(raw) > limit and not raw.endswith(b"\n"):
            raise LineTooLong(number)
        if b"\x00" in raw.strip(b"\r\n"):  # UTF-16 without its mark: valid UTF-8, but not text
            raise UnreadableLine(f"Line {number} holds NUL bytes: the file looks like UTF-16 "
                                 f"without a byte order mark. {SAVE_AS_UTF_8}", number)
        try:
            yield number, raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise UnreadableLine(f"Line {number} is not UTF-8 text (byte 0x{raw[exc.start]:02x} "
                                 f"at byte {exc.start + 1} of the line). {SAVE_AS_UTF_8}",
                                 number) from None


def _utf_16_lines(source: IO[bytes], encoding: str, limit: int) -> Iterator[tuple[int, str]]:
    for number, raw in enumerate(_utf_16_byte_lines(source, encoding, limit), start=1):
        try:
            yield number, raw.decode(encoding)
        except UnicodeDecodeError:
            raise UnreadableLine(f"Line {number} is not UTF-16 text, though the file starts "
                                 f"with a UTF-16 byte order mark. {SAVE_AS_UTF_8}",
                                 number) from None


def _utf_16_byte_lines(source: IO[bytes], encoding: str, limit: int) -> Iterator[bytes]:
    """The file's lines as bytes, each decoded on its own, so that an error names its line
    (a text reader decodes ahead by blocks and would blame an earlier one)."""
    newline = "\n".encode(encoding)
    pending = bytearray()
    lines = 0
    while chunk := source.read(CHUNK_BYTES):
        pending += chunk
        start = 0
        while (end := _find_unit(pending, newline, start)) != -1:
            if end - start > 2 * limit:
                raise LineTooLong(lines + 1)
            lines += 1
            yield bytes(pending[start:end + 2])
            start = end + 2
        del pending[:start]
        if len(pending) > 2 * limit:  # no newline in sight: the line is too long already
            raise LineTooLong(lines + 1)
    if pending:
        yield bytes(pending)


def _find_unit(data: bytearray, unit: bytes, start: int) -> int:
    """The next ``unit`` at an even offset from ``start`` (a code unit, not half of two)."""
    index = data.find(unit, start)
    while index != -1 and (index - start) % 2:
        index = data.find(unit, index + 1)
    return index
