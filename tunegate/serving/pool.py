"""The served models: one model process each, started on first use, at most ``capacity`` kept.

Requests share a model's process (it decodes several at once); at most ``max_queue`` requests
use or wait for one model, beyond that ``ModelBusy``. The least recently used processes are
stopped beyond ``capacity``; a model deleted through the API is stopped at once. A process that
is dropped while requests still use it stops when the last of them lets go. A process that died
(or was killed as hung) is started again by the next request for its model.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class ModelFiles:
    """What to run for one served model id: the base GGUF and, for fine-tuned models, the adapter."""

    model_id: str
    base: Path
    adapter: Path | None = None


class ModelLoadError(Exception):
    """llama.cpp could not load the base GGUF or the adapter."""


class ModelNoSpace(ModelLoadError):
    """The model could not be prepared for serving: its disk has no room (its merged copy)."""


class ModelBusy(Exception):
    """Too many requests are already using or waiting for this model."""


class _Entry:
    def __init__(self, files: ModelFiles):
        self.files = files
        self.starting = threading.Lock()  # held while the model process starts
        self.model: Any = None  # what the loader returned (a ServedModel)
        self.users = 0  # requests using or waiting for the model
        self.dropped = False  # no longer in the pool: close when the last user leaves


Loader = Callable[[ModelFiles], Any]


class ModelPool:
    """Model processes by model id, least recently used stopped first.

    ``loader`` turns ``ModelFiles`` into a started model (tests pass fakes: the pool only calls
    ``alive()`` and ``close()`` on what it returns).
    """

    def __init__(self, capacity: int, loader: Loader, max_queue: int = 16):
        self.capacity = max(1, capacity)
        # A waiting request holds one of the server's worker threads; without a bound, one
        # popular model could take them all and stall every other endpoint.
        self.max_queue = max(1, max_queue)
        self._loader = loader
        self._lock = threading.Lock()  # guards _entries and the users/dropped counters
        self._entries: OrderedDict[str, _Entry] = OrderedDict()

    @contextmanager
    def use(self, files: ModelFiles) -> Iterator[Any]:
        """The running model for ``files``, started first if it is not running.

        Raises ``ModelBusy`` when ``max_queue`` requests already use or wait for it. The lease
        may be released from another thread than the one that took it (streaming does that).
        """
        entry = self._checkout(files)
        try:
            yield self._running(entry)
        except ModelLoadError:
            self._drop(entry)
            raise
        finally:
            self._checkin(entry)

    def _running(self, entry: _Entry) -> Any:
        with entry.starting:
            if entry.model is not None and not entry.model.alive():
                dead, entry.model = entry.model, None  # died or was killed: start a new one
                dead.close()
            if entry.model is None:
                entry.model = self._loader(entry.files)
            return entry.model

    def evict(self, model_id: str) -> bool:
        """Stop keeping ``model_id``; it is stopped now, or when its last request ends."""
        with self._lock:
            entry = self._entries.pop(model_id, None)
            if entry is None:
                return False
            entry.dropped = True
            idle = entry.users == 0
        if idle:
            _close(entry)
        return True

    def loaded(self) -> list[str]:
        """Ids of the models kept now, least recently used first."""
        with self._lock:
            return [key for key, entry in self._entries.items() if entry.model is not None]

    def users(self) -> dict[str, int]:
        """Requests using or waiting for each kept model (its queue, for ``GET /metrics``)."""
        with self._lock:
            return {key: entry.users for key, entry in self._entries.items()}

    def running(self, model_id: str) -> Any:
        """The model process kept for ``model_id``, or None (for tests and diagnostics)."""
        with self._lock:
            entry = self._entries.get(model_id)
            return None if entry is None else entry.model

    def close(self) -> None:
        """Drop every model (idle ones are stopped at once)."""
        for model_id in list(self._entries):
            self.evict(model_id)

    def _checkout(self, files: ModelFiles) -> _Entry:
        idle: list[_Entry] = []
        with self._lock:
            entry = self._entries.get(files.model_id)
            if entry is not None and entry.files != files:  # same id, other files: restart
                idle += self._unlink(files.model_id)
                entry = None
            if entry is None:
                entry = _Entry(files)
                self._entries[files.model_id] = entry
            elif entry.users >= self.max_queue:
                raise ModelBusy(f"{entry.users} requests are already running or waiting for "
                                f"{files.model_id}")
            self._entries.move_to_end(files.model_id)
            entry.users += 1
            while len(self._entries) > self.capacity:
                idle += self._unlink(next(iter(self._entries)))
        for stale in idle:
            _close(stale)
        return entry

    def _unlink(self, model_id: str) -> list[_Entry]:
        """Remove an entry from the pool (caller holds ``_lock``); returns it if it is idle."""
        entry = self._entries.pop(model_id)
        entry.dropped = True
        return [entry] if entry.users == 0 else []

    def _drop(self, entry: _Entry) -> None:
        with self._lock:
            if self._entries.get(entry.files.model_id) is entry:
                self._entries.pop(entry.files.model_id)
            entry.dropped = True

    def _checkin(self, entry: _Entry) -> None:
        with self._lock:
            entry.users -= 1
            idle = entry.dropped and entry.users == 0
        if idle:
            _close(entry)


def _close(entry: _Entry) -> None:
    model, entry.model = entry.model, None
    if model is not None:
        model.close()
