"""A job's news, polled through the SDK: its status (``retrieve``) and the events not seen yet
(``list_events``, newest first, de-duplicated by id), oldest first.

Polling, not the server-sent-events stream: it works against any OpenAI-compatible server, and
against OpenAI itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from openai import OpenAI
    from openai.types.fine_tuning import FineTuningJob, FineTuningJobEvent

# The first poll of a job shows at most this many past events (a long job has thousands of
# metrics events; the newest ones are what a follower needs).
HISTORY_LIMIT = 100
PAGE_SIZE = 100


@dataclass(frozen=True)
class Snapshot:
    """One poll's answer: the job as it is now, and the events that are new, oldest first.

    The job is read before the events, so the snapshot that shows a finished job also holds
    every event up to its last (a status change and its event are stored together)."""

    job: FineTuningJob
    events: list[FineTuningJobEvent]


class ServerUnreachable(Exception):
    """A poll found no server (restarting, say); the SDK's connection error is the cause."""


class Feed(Protocol):
    """Where a follower gets its snapshots (the SDK's :class:`JobFeed`, or a test's fake)."""

    def poll(self) -> Snapshot:
        """The job now and its new events; :class:`ServerUnreachable` when no server answers."""
        ...


class JobFeed:
    """Snapshots of one job from a server, through the official SDK."""

    def __init__(self, client: OpenAI, job_id: str):
        self.client = client
        self.job_id = job_id
        self._seen: set[str] = set()
        self._first = True

    def poll(self) -> Snapshot:
        import openai

        try:
            job = self.client.fine_tuning.jobs.retrieve(self.job_id)
            return Snapshot(job, self._new_events())
        except openai.APIConnectionError as error:  # timeouts too
            raise ServerUnreachable(str(error)) from error

    def _new_events(self) -> list[FineTuningJobEvent]:
        """Pages newest first until an event seen before (or, on the first poll, the history
        limit); what came since, oldest first."""
        fresh: list[FineTuningJobEvent] = []
        for event in self.client.fine_tuning.jobs.list_events(self.job_id, limit=PAGE_SIZE):
            if event.id in self._seen:
                break
            fresh.append(event)
            if self._first and len(fresh) >= HISTORY_LIMIT:
                break  # before the SDK asks for the next page
        self._first = False
        self._seen.update(event.id for event in fresh)
        return fresh[::-1]
