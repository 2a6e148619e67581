"""Several generations at once: ``n`` choices are ``n`` requests to llama-server, sent together
so that its parallel slots decode them in one batch instead of one after another."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Generator, Iterator
from typing import TypeVar

T = TypeVar("T")
_DONE = object()


def interleave(starts: list[Callable[[], Generator[T, None, None]]]
               ) -> Generator[tuple[int, T], None, None]:
    """The items of the generators ``starts`` make, as ``(index, item)`` in the order they come.

    Each generator runs in its own thread. An exception in one is raised here; closing this
    generator (or an exception) stops the others after their current item, and they close
    their own generators (a generation's connection is closed by the thread advancing it).
    """
    if len(starts) == 1:  # no thread for the common case
        generator = starts[0]()
        try:
            for item in generator:
                yield 0, item
        finally:
            generator.close()
        return
    items: queue.Queue[tuple[int, object]] = queue.Queue()
    stop = threading.Event()

    def pump(index: int, start: Callable[[], Generator[T, None, None]]) -> None:
        try:
            generator = start()
            try:
                for item in generator:
                    items.put((index, item))
                    if stop.is_set():
                        break
            finally:
                generator.close()
        except BaseException as exc:  # handed to the consumer, which raises it
            items.put((index, exc))
        items.put((index, _DONE))

    threads = [threading.Thread(target=pump, args=(index, start), daemon=True)
               for index, start in enumerate(starts)]
    for thread in threads:
        thread.start()
    try:
        yield from _drain(items, len(threads))
    finally:
        stop.set()
        for thread in threads:
            thread.join()


def _drain(items: queue.Queue[tuple[int, object]], running: int) -> Iterator[tuple[int, T]]:
    while running:
        index, item = items.get()
        if item is _DONE:
            running -= 1
        elif isinstance(item, BaseException):
            raise item
        else:
            yield index, item  # type: ignore[misc]
