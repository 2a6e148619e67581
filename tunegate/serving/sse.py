"""The lines of a server-sent event stream as it arrives in byte chunks, read the same way for
every stream tunegate consumes: a llama.cpp process's (tunegate.serving.engine) and an
upstream endpoint's (tunegate.serving.upstream)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator


def sse_lines(chunks: Iterable[bytes]) -> Iterator[str]:
    """The lines of an event stream, split on line feeds only.

    httpx's ``iter_lines`` splits like ``str.splitlines``, also on U+0085, U+2028, U+001C and
    others, which llama.cpp (and other servers) write raw inside their JSON strings (a prompt or
    an answer holding one would cut an event in two, and the request would fail).
    """
    pending = b""
    for chunk in chunks:
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            yield line.rstrip(b"\r").decode("utf-8", "replace")
    if pending:
        yield pending.rstrip(b"\r").decode("utf-8", "replace")
