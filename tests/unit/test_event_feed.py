"""The live events' shared poller (tunegate.api.event_feed) over a scripted in-memory store.

The store here is a list of committed events and a status per job; each test commits events
(in any id order) and drives the feed's ticks itself, so nothing depends on timing.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping

from tunegate import ids
from tunegate.api.event_feed import FEED_LIMIT, EventFeed, Follower
from tunegate.domain.jobs import EventLevel, JobEvent, JobStatus
from tunegate.store.base import EventsAfter


def event(job_id: str, message: str) -> JobEvent:
    return JobEvent(id=ids.new_id(ids.EVENT), job_id=job_id, created_at=1,
                    level=EventLevel.INFO, message=message)


class ScriptedStore:
    """``events_after`` over what the test committed; every call recorded."""

    def __init__(self) -> None:
        self.events: list[JobEvent] = []
        self.statuses: dict[str, JobStatus] = {}
        self.calls: list[tuple[dict[str, str | None], int]] = []
        self.failures = 0  # reads that fail (a locked or restarting database)

    def commit(self, *events: JobEvent, status: JobStatus | None = None) -> None:
        self.events.extend(events)
        if status is not None:
            self.statuses[events[0].job_id] = status

    def events_after(self, after: Mapping[str, str | None], *, limit: int) -> EventsAfter:
        self.calls.append((dict(after), limit))
        if self.failures:
            self.failures -= 1
            raise RuntimeError("database is locked")
        rows = sorted((e for e in self.events if e.job_id in after
                       and (after[e.job_id] is None or e.id > after[e.job_id])),  # type: ignore[operator]
                      key=lambda e: e.id)
        statuses = {job: status for job, status in self.statuses.items() if job in after}
        return EventsAfter(statuses, rows[:limit], len(rows) > limit)


def feed_over(store: ScriptedStore) -> EventFeed:
    # An hour between ticks: the tests tick by hand.
    return EventFeed(store, poll_seconds=3600)  # type: ignore[arg-type]


def messages(events: list[JobEvent] | None) -> list[str]:
    return [e.message for e in events or []]


def test_a_follower_replays_then_gets_live_events_each_once_until_the_terminal_one() -> None:
    async def scenario() -> None:
        store = ScriptedStore()
        store.commit(event("j", "created"), status=JobStatus.RUNNING)
        feed = feed_over(store)
        follower = Follower(feed, "j", after=None)
        assert messages(await follower.next(1)) == ["created"]
        assert follower.replayed and not follower.finished
        await feed.tick()  # "created" again, from the feed's look back: not sent twice
        assert await follower.next(1) == []
        assert await follower.next(0.01) is None  # nothing new: the stream sends a ping
        store.commit(event("j", "step 1"))
        await feed.tick()
        assert messages(await follower.next(1)) == ["step 1"]
        store.commit(event("j", "step 2"), event("j", "succeeded"), status=JobStatus.SUCCEEDED)
        await feed.tick()
        assert messages(await follower.next(1)) == ["step 2", "succeeded"]
        assert follower.finished
        follower.close()
        assert feed.listener_count == 0

    asyncio.run(scenario())


def test_an_event_committed_after_a_newer_one_still_arrives_once() -> None:
    """A cancel made before a metrics event but committed after it (it waited for the lock)."""
    async def scenario() -> None:
        store = ScriptedStore()
        store.commit(event("j", "created"), status=JobStatus.RUNNING)
        feed = feed_over(store)
        follower = Follower(feed, "j", after=None)
        await follower.next(1)
        cancelled, step = event("j", "cancelled"), event("j", "step 9")  # ids in that order
        store.commit(step)
        await feed.tick()
        assert messages(await follower.next(1)) == ["step 9"]
        store.commit(cancelled, status=JobStatus.CANCELLED)
        await feed.tick()
        assert messages(await follower.next(1)) == ["cancelled"] and follower.finished
        follower.close()

    asyncio.run(scenario())


def test_resuming_sends_only_what_follows_the_given_event() -> None:
    async def scenario() -> None:
        store = ScriptedStore()
        first, second, third = event("j", "a"), event("j", "b"), event("j", "c")
        store.commit(first, second, third, status=JobStatus.FAILED)
        follower = Follower(feed_over(store), "j", after=first.id)
        assert messages(await follower.next(1)) == ["b", "c"]
        assert follower.finished  # terminal already: the replay is all there is
        follower.close()

    asyncio.run(scenario())


def test_a_long_history_is_replayed_in_pages() -> None:
    async def scenario() -> None:
        store = ScriptedStore()
        store.commit(*[event("j", f"e{i}") for i in range(1200)], status=JobStatus.SUCCEEDED)
        follower = Follower(feed_over(store), "j", after=None)
        got: list[str] = []
        while not follower.finished:
            got += messages(await follower.next(1))
        assert got == [f"e{i}" for i in range(1200)]
        assert len(store.calls) == 3  # pages of 500
        follower.close()

    asyncio.run(scenario())


def test_many_listeners_cost_one_store_read_per_tick() -> None:
    async def scenario() -> None:
        store = ScriptedStore()
        jobs = [f"job{i}" for i in range(4)]
        for job in jobs:
            store.commit(event(job, "created"), status=JobStatus.RUNNING)
        feed = feed_over(store)
        followers = [Follower(feed, job, after=None) for job in jobs for _ in range(25)]
        for follower in followers:
            await follower.next(1)  # replays: one read each, when a stream starts
        store.calls.clear()
        for tick in range(5):
            for job in jobs:
                store.commit(event(job, f"step {tick}"))
            await feed.tick()
        assert len(store.calls) == 5
        assert all(set(after) == set(jobs) and limit == FEED_LIMIT for after, limit in store.calls)
        for follower in followers:
            got: list[str] = []
            while len(got) < 5:
                got += messages(await follower.next(1))
            assert got == [f"step {tick}" for tick in range(5)]
        for follower in followers:
            follower.close()
        assert feed.listener_count == 0
        await feed.close()

    asyncio.run(scenario())


def test_a_job_that_disappears_ends_its_streams() -> None:
    async def scenario() -> None:
        store = ScriptedStore()
        store.commit(event("j", "created"), status=JobStatus.RUNNING)
        feed = feed_over(store)
        follower = Follower(feed, "j", after=None)
        await follower.next(1)
        del store.statuses["j"]
        await feed.tick()
        assert await follower.next(1) == [] and follower.finished
        follower.close()

    asyncio.run(scenario())


def test_a_failed_read_is_retried_at_the_next_tick() -> None:
    async def scenario() -> None:
        store = ScriptedStore()
        store.commit(event("j", "created"), status=JobStatus.RUNNING)
        feed = EventFeed(store, poll_seconds=0.01)  # type: ignore[arg-type]
        follower = Follower(feed, "j", after=None)
        await follower.next(1)
        store.failures = 2
        store.commit(event("j", "step 1"))
        got: list[str] = []
        while not got:
            got = messages(await follower.next(5))
        assert got == ["step 1"] and store.failures == 0
        follower.close()
        await feed.close()

    asyncio.run(scenario())


def test_a_poller_started_on_another_loop_is_closed_without_awaiting_it_there() -> None:
    """In-process test clients each run their own event loop: one may start the poller (a live
    stream) and another's lifespan close it. Awaiting a task of another loop raised
    (schemathesis' stateful run met it); the poller is cancelled on its own loop instead."""
    feed = feed_over(ScriptedStore())
    other = asyncio.new_event_loop()
    thread = threading.Thread(target=other.run_forever, daemon=True)
    thread.start()

    async def listen() -> None:
        feed.listen("ftjob-a")

    async def pending() -> int:
        return len([t for t in asyncio.all_tasks() if t is not asyncio.current_task()])

    try:
        asyncio.run_coroutine_threadsafe(listen(), other).result(timeout=5)
        assert asyncio.run_coroutine_threadsafe(pending(), other).result(timeout=5) == 1
        asyncio.run(feed.close())  # another loop: before, RuntimeError
        for _ in range(100):
            if asyncio.run_coroutine_threadsafe(pending(), other).result(timeout=5) == 0:
                break
        assert asyncio.run_coroutine_threadsafe(pending(), other).result(timeout=5) == 0
    finally:
        other.call_soon_threadsafe(other.stop)
        thread.join(timeout=5)
        other.close()
