"""Live job events for every open event stream of this server, read by one shared poller.

The store is the only channel from the workers (possibly other processes, or other machines),
so new events have to be read from it. ``EventFeed`` keeps one task per server that, every
``poll_seconds`` while any stream is open, reads the statuses and recent events of every job
with a listener in one store transaction (``Store.events_after``) and hands each listener what
is new: a hundred streams cost one read per tick, not a hundred. The task ends with the last
listener.

Event ids sort by the time they were made, not the time they were committed: an event made
just before another but committed after it (the API's cancel waiting for the lock the worker's
metrics hold) would be skipped by a plain "after the newest id seen" cursor. Each tick reads
back ``LOOKBACK_SECONDS`` (more than SQLite's 30 s busy timeout) before the newest event seen
and passes on only the ids not seen yet, so such an event arrives late but arrives.

``Follower`` is one stream's view: the stored events after its resume point, then the live
ones, each once, ending after the job's terminal event.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field

import anyio

from tunegate import ids
from tunegate.domain.jobs import JobEvent, JobStatus
from tunegate.store.base import Store

log = logging.getLogger("tunegate.api")
POLL_SECONDS = 0.5
LOOKBACK_SECONDS = 60.0
# Events read per store call: a replay of a long job comes in pages of this size.
REPLAY_PAGE = 500
FEED_LIMIT = 10_000


@dataclass(frozen=True)
class Delivery:
    """What one tick brought a listener: new events (oldest first), and whether the job is now
    terminal (its terminal event is among these or was delivered before: nothing follows)."""

    events: list[JobEvent]
    final: bool


@dataclass
class _Watched:
    """One job's place in the feed: its listeners and the event ids seen lately."""

    listeners: set[Listener] = field(default_factory=set)
    seen: dict[str, int] = field(default_factory=dict)  # event id -> millis in the id
    floor_millis: int = 0


class Listener:
    """One stream's queue of deliveries from the feed."""

    def __init__(self, job_id: str):
        self.job_id = job_id
        self._queue: asyncio.Queue[Delivery] = asyncio.Queue()

    def put(self, delivery: Delivery) -> None:
        self._queue.put_nowait(delivery)

    async def next(self, timeout: float) -> Delivery | None:
        """The next delivery, or ``None`` when none came within ``timeout`` seconds."""
        try:
            return await asyncio.wait_for(self._queue.get(), timeout)
        except TimeoutError:
            return None


class EventFeed:
    """The server's one poller of new job events (see the module's docstring)."""

    def __init__(self, store: Store, *, poll_seconds: float = POLL_SECONDS,
                 lookback_seconds: float = LOOKBACK_SECONDS):
        self.store = store
        self.poll_seconds = poll_seconds
        self.lookback_millis = int(lookback_seconds * 1000)
        self._jobs: dict[str, _Watched] = {}
        self._task: asyncio.Task[None] | None = None
        self.ticks = 0  # store reads so far (tests and the benchmark count them)

    @property
    def listener_count(self) -> int:
        return sum(len(watched.listeners) for watched in self._jobs.values())

    def listen(self, job_id: str) -> Listener:
        """A listener for ``job_id``'s events committed from now on (and up to
        ``LOOKBACK_SECONDS`` before); call on the server's event loop."""
        listener = Listener(job_id)
        watched = self._jobs.get(job_id)
        if watched is None:
            # Event ids carry their wall-clock milliseconds (tunegate.ids).
            watched = self._jobs[job_id] = _Watched(
                floor_millis=int(time.time() * 1000) - self.lookback_millis)
        watched.listeners.add(listener)
        loop = asyncio.get_running_loop()
        # A task of another loop (a test client's, gone) cannot serve this one.
        if self._task is None or self._task.done() or self._task.get_loop() is not loop:
            self._task = loop.create_task(self._run())
        return listener

    def release(self, listener: Listener) -> None:
        """Stop delivering to ``listener`` (its stream ended or its client left)."""
        watched = self._jobs.get(listener.job_id)
        if watched is None:
            return
        watched.listeners.discard(listener)
        if not watched.listeners:
            del self._jobs[listener.job_id]

    async def close(self) -> None:
        """Stop the poller (the server is shutting down)."""
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        if task.get_loop() is not asyncio.get_running_loop():
            # Started on another loop (in-process test clients each run their own): awaiting it
            # here raises; cancelled, it ends on its own loop.
            return
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def _run(self) -> None:
        while self._jobs:
            await asyncio.sleep(self.poll_seconds)
            if not self._jobs:
                break
            try:
                await self.tick()
            except Exception:  # a store that failed once (locked, restarting) is read again
                log.exception("Reading new job events for the live streams failed; retrying")

    async def tick(self) -> None:
        """One store read for every watched job, and the deliveries it makes."""
        floors = {job_id: ids.floor_id(ids.EVENT, watched.floor_millis)
                  for job_id, watched in self._jobs.items()}
        self.ticks += 1
        read = await anyio.to_thread.run_sync(
            lambda: self.store.events_after(floors, limit=FEED_LIMIT))
        fresh: dict[str, list[JobEvent]] = {job_id: [] for job_id in floors}
        for event in read.events:
            watched = self._jobs.get(event.job_id)
            if watched is not None and event.id not in watched.seen:
                watched.seen[event.id] = ids.millis_of(event.id, ids.EVENT)
                fresh[event.job_id].append(event)
        for job_id in floors:
            watched = self._jobs.get(job_id)
            if watched is None:  # every listener left while the store was read
                continue
            status = read.statuses.get(job_id)
            final = status is None or status.is_terminal
            if fresh[job_id] or final:
                for listener in list(watched.listeners):
                    listener.put(Delivery(fresh[job_id], final))
            self._forget_old(watched)

    def _forget_old(self, watched: _Watched) -> None:
        if not watched.seen:
            return
        watched.floor_millis = max(watched.floor_millis,
                                   max(watched.seen.values()) - self.lookback_millis)
        watched.seen = {event_id: millis for event_id, millis in watched.seen.items()
                        if millis >= watched.floor_millis}


class Follower:
    """One stream's events: those stored after ``after`` (all with ``None``), then live ones,
    each once, oldest first (a late-committed one arrives late), until the job's terminal
    event. Use it on the server's event loop and ``close()`` it however the stream ends."""

    def __init__(self, feed: EventFeed, job_id: str, after: str | None):
        self.feed = feed
        self.job_id = job_id
        self.after = after
        self.finished = False
        self._sent: set[str] = set()
        self._listener: Listener | None = None
        self.replayed = False  # every event stored when the stream began has been returned

    async def next(self, timeout: float) -> list[JobEvent] | None:
        """The next events to send; ``None`` when none came within ``timeout`` seconds. After
        the last events ``finished`` is true."""
        if self._listener is None:
            # Listening before reading the store: what commits in between is in one or both.
            self._listener = self.feed.listen(self.job_id)
        if not self.replayed:
            return await self._replay()
        delivery = await self._listener.next(timeout)
        if delivery is None:
            return None
        self.finished = delivery.final
        return self._unsent(delivery.events)

    async def _replay(self) -> list[JobEvent]:
        """One page of the stored events (the stream asks again until the replay is done)."""
        cursor = max(self._sent) if self._sent else self.after
        read = await anyio.to_thread.run_sync(
            lambda: self.feed.store.events_after({self.job_id: cursor}, limit=REPLAY_PAGE))
        if not read.has_more:
            self.replayed = True
            status: JobStatus | None = read.statuses.get(self.job_id)
            # Terminal already: its last event is in this read; nothing live will follow.
            self.finished = status is None or status.is_terminal
        return self._unsent(read.events)

    def _unsent(self, events: list[JobEvent]) -> list[JobEvent]:
        new = [event for event in events if event.id not in self._sent
               and (self.after is None or event.id > self.after)]
        self._sent.update(event.id for event in new)
        return new

    def close(self) -> None:
        if self._listener is not None:
            self.feed.release(self._listener)
            self._listener = None
