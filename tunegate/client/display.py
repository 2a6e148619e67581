"""How a followed job is shown: a live progress line in a terminal (rich), plain lines
elsewhere (a pipe, a file, a CI log: no control codes).

Both print each non-metrics event as a line as it comes; they differ in the metrics: the
terminal redraws one progress line in place, the plain display writes a progress line now and
then (every tenth of the steps, at most every ``PLAIN_EVERY_SECONDS`` of the job's time
otherwise, and the first and last step).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import IO, TYPE_CHECKING, Protocol

from rich.console import Console, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from tunegate.client.progress import Metrics, Progress, duration, figures

if TYPE_CHECKING:
    from openai.types.fine_tuning import FineTuningJobEvent

PLAIN_EVERY_SECONDS = 30
LEVEL_STYLES = {"warn": "yellow", "error": "bold red"}


def event_line(event: FineTuningJobEvent) -> str:
    """``12:03:04 warn  message``: the local time, the level when it is not ``info``."""
    clock = time.strftime("%H:%M:%S", time.localtime(event.created_at))
    level = "" if event.level == "info" else f"{event.level}  "
    return f"{clock} {level}{event.message}"


class Display(Protocol):
    """What a follower tells its display; ``now`` is the wall clock (for the ETA)."""

    def start(self) -> None: ...

    def event(self, event: FineTuningJobEvent, progress: Progress, now: float) -> None: ...

    def refresh(self, progress: Progress, now: float) -> None: ...

    def notice(self, text: str) -> None:
        """A line from the follower itself (not an event of the job)."""
        ...

    def stop(self) -> None: ...


class PlainDisplay:
    """Lines only, one per event worth a line; for anything that is not a terminal."""

    def __init__(self, out: IO[str]):
        self.out = out
        self._printed: Metrics | None = None

    def start(self) -> None:
        pass

    def event(self, event: FineTuningJobEvent, progress: Progress, now: float) -> None:
        if event.type != "metrics":
            self._write(event_line(event))
        elif progress.latest is not None and self._worth_a_line(progress.latest):
            self._printed = progress.latest
            self._write("  " + "  ".join(figures(progress, now)))

    def _worth_a_line(self, metrics: Metrics) -> bool:
        last = self._printed
        if last is None or metrics.step == metrics.total_steps:
            return True
        if metrics.created_at - last.created_at >= PLAIN_EVERY_SECONDS:
            return True
        total = metrics.total_steps or 0
        return total > 0 and metrics.step * 10 // total > last.step * 10 // total

    def refresh(self, progress: Progress, now: float) -> None:
        pass  # nothing is redrawn in a pipe

    def notice(self, text: str) -> None:
        self._write(text)

    def stop(self) -> None:
        self.out.flush()

    def _write(self, line: str) -> None:
        self.out.write(line + "\n")
        self.out.flush()  # a follower's reader (tail -f, a CI log) sees each line at once


def status_text(progress: Progress, elapsed: float) -> Text:
    style = {"succeeded": "bold green", "failed": "bold red", "cancelled": "bold yellow",
             "running": "bold cyan"}.get(progress.status, "bold")
    text = Text(progress.status, style=style)
    if progress.latest is None and not progress.finished:
        text.append(f" {duration(elapsed)}", style="dim")  # waiting: show that time passes
    return text


class LiveDisplay:
    """A progress line redrawn in place below the event lines (rich ``Live``)."""

    def __init__(self, console: Console, clock: Callable[[], float] = time.monotonic):
        self.console = console
        self.clock = clock
        self._started = clock()
        # Redrawn on each poll (about once a second): no refresh thread of its own.
        self._live = Live(console=console, auto_refresh=False, transient=False,
                          redirect_stdout=False, redirect_stderr=False)

    def start(self) -> None:
        self._live.start()

    def event(self, event: FineTuningJobEvent, progress: Progress, now: float) -> None:
        if event.type != "metrics":
            # Printed through the live console: it lands above the progress line.
            self.console.print(Text(event_line(event), style=LEVEL_STYLES.get(event.level, "")),
                               soft_wrap=False, overflow="fold")

    def refresh(self, progress: Progress, now: float) -> None:
        self._live.update(self._renderable(progress, now), refresh=True)

    def notice(self, text: str) -> None:
        self.console.print(Text(text, style="yellow"), soft_wrap=False, overflow="fold")

    def stop(self) -> None:
        self._live.stop()

    def _renderable(self, progress: Progress, now: float) -> RenderableType:
        row = Table.grid(padding=(0, 1))
        row.add_column(no_wrap=True)
        cells: list[RenderableType] = [status_text(progress, self.clock() - self._started)]
        fraction = progress.fraction()
        if fraction is not None:
            row.add_column(no_wrap=True)
            bar_width = max(10, min(40, self.console.width // 4))
            cells.append(ProgressBar(total=1.0, completed=fraction, width=bar_width))
        shown = figures(progress, now)
        if shown:
            row.add_column(no_wrap=True, overflow="ellipsis")
            cells.append(Text(" · ".join(shown)))
        row.add_row(*cells)
        return row



def display_for(out: IO[str], *, console: Console | None = None) -> Display:
    """The live display when ``out`` is a terminal, else the plain one."""
    if console is None and not out.isatty():
        return PlainDisplay(out)
    return LiveDisplay(console or Console(file=out))
