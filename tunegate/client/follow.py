"""Following a job until it ends: poll about once a second, feed the display, and say how it
ended (the exit code and the lines a user reads)."""

from __future__ import annotations

import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tunegate.client.display import Display
from tunegate.client.feed import Feed, ServerUnreachable
from tunegate.client.progress import Metrics, Progress

if TYPE_CHECKING:
    from openai.types.fine_tuning import FineTuningJob

POLL_SECONDS = 1.0
RECONNECT_SECONDS = 120.0

# Exit codes of the client commands (argparse's own is 2 for a bad command line).
EXIT_OK = 0
EXIT_FAILED = 1  # the job failed or was cancelled, or the server refused a request
EXIT_INTERRUPTED = 130  # Ctrl-C, the job left as it was (the shell's code for SIGINT)


def follow(feed: Feed, display: Display, *, interval: float | None = None,
           sleep: Callable[[float], None] = time.sleep,
           clock: Callable[[], float] = time.time) -> FineTuningJob:
    """Show the job's events and progress until it succeeds, fails or is cancelled; the job
    then. A paused job is followed on (it may be resumed), a server that stops answering is
    polled on for ``RECONNECT_SECONDS``; Ctrl-C ends the wait."""
    progress = Progress()
    unreachable_since: float | None = None
    display.start()
    try:
        while True:
            try:
                snapshot = feed.poll()
            except ServerUnreachable as gone:
                # A server restarting (its worker re-queues the job and resumes it) is worth
                # waiting for; one gone for good is a one-line error after a while.
                if unreachable_since is None:
                    unreachable_since = clock()
                    display.notice(f"The server does not answer; trying again for "
                                   f"{RECONNECT_SECONDS:.0f} s")
                elif clock() - unreachable_since > RECONNECT_SECONDS:
                    # The SDK's error itself, its own cause kept: the line names the reason.
                    error = gone.__cause__ or gone
                    raise error from error.__cause__
                sleep(POLL_SECONDS if interval is None else interval)
                continue
            if unreachable_since is not None:
                unreachable_since = None
                display.notice("The server answers again")
            progress.observe_job(snapshot.job.status, snapshot.job.estimated_finish)
            now = clock()
            for event in snapshot.events:
                if event.type == "metrics":
                    metrics = Metrics.from_event(event.data, event.created_at)
                    if metrics is not None:
                        progress.observe_metrics(metrics)
                display.event(event, progress, now)
            display.refresh(progress, now)
            if progress.finished:
                return snapshot.job
            sleep(POLL_SECONDS if interval is None else interval)
    finally:
        display.stop()


@dataclass(frozen=True)
class Ending:
    """How a followed job ended, for the user: the exit code, lines for stdout (the result)
    and for stderr (what went wrong)."""

    code: int
    out: list[str]
    err: list[str]


def ending(job: FineTuningJob, *, chat_command: str) -> Ending:
    """Succeeded: the model's name and a call to try it (``chat_command`` with the model and
    a prompt appended); failed or cancelled: the job's error code and message."""
    if job.status == "succeeded":
        model = job.fine_tuned_model or ""
        return Ending(EXIT_OK, [f"Fine-tuned model: {model}",
                                f"Try it: {chat_command} {shlex.quote(model)} \"Hello!\""], [])
    if job.error is not None and (job.error.code or job.error.message):
        return Ending(EXIT_FAILED, [], [f"Job {job.id} {job.status}: "
                                        f"{job.error.code or 'error'}: {job.error.message}"])
    return Ending(EXIT_FAILED, [], [f"Job {job.id} {job.status}."])

