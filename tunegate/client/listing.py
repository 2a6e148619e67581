"""``tunegate jobs list`` and ``jobs show`` as text: a table in a terminal, tab-separated
lines elsewhere (for ``cut`` and ``awk``); the details as ``name: value`` lines."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import IO, TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

from tunegate.client.progress import Metrics, Progress, figures

if TYPE_CHECKING:
    from openai.types.fine_tuning import FineTuningJob, FineTuningJobEvent

COLUMNS = ("ID", "STATUS", "MODEL", "CREATED", "FINE-TUNED MODEL")


def when(timestamp: int | None) -> str:
    """A Unix time as local ``YYYY-MM-DD HH:MM:SS``; empty for none."""
    return "" if timestamp is None else time.strftime("%Y-%m-%d %H:%M:%S",
                                                      time.localtime(timestamp))


def _row(job: FineTuningJob) -> tuple[str, ...]:
    return (job.id, job.status, job.model, when(job.created_at), job.fine_tuned_model or "")


def jobs_table(jobs: Sequence[FineTuningJob], out: IO[str]) -> None:
    """One row a job, as the API listed them (newest first)."""
    if not out.isatty():
        for row in (COLUMNS, *map(_row, jobs)):
            out.write("\t".join(row) + "\n")
        return
    table = Table(box=None, header_style="bold", pad_edge=False)
    for name in COLUMNS:
        # Ids are for copying: never cut short; a narrow terminal folds the model's name.
        table.add_column(name, no_wrap=name in ("ID", "STATUS", "CREATED"),
                         overflow="fold", min_width=len(jobs[0].id) if name == "ID" and jobs
                         else None)
    for job in jobs:
        table.add_row(*_row(job))
    Console(file=out).print(table)


def latest_progress(job: FineTuningJob, events: Sequence[FineTuningJobEvent]) -> str:
    """The newest metrics event of ``events`` (newest first) as progress figures."""
    progress = Progress(status=job.status, estimated_finish=job.estimated_finish)
    for event in events:
        metrics = Metrics.from_event(event.data, event.created_at) if event.type == "metrics" \
            else None
        if metrics is not None:
            progress.observe_metrics(metrics)
            break
    return "  ".join(figures(progress, time.time()))


def _hyperparameters(job: FineTuningJob) -> str:
    method: Any = job.method
    chosen = getattr(method, method.type, None) if method is not None else None
    values = getattr(chosen, "hyperparameters", None) or job.hyperparameters
    shown = values.model_dump(exclude_none=True) if values is not None else {}
    return ", ".join(f"{name}={value}" for name, value in shown.items())


def job_details(job: FineTuningJob, events: Sequence[FineTuningJobEvent], out: IO[str]) -> None:
    """``name: value`` lines: what a user asks of one job."""
    method: Any = job.method
    rows = [
        ("id", job.id), ("status", job.status), ("model", job.model),
        ("fine-tuned model", job.fine_tuned_model or ""),
        ("method", method.type if method is not None else "supervised"),
        ("hyperparameters", _hyperparameters(job)),
        ("training file", job.training_file), ("validation file", job.validation_file or ""),
        ("created", when(job.created_at)), ("finished", when(job.finished_at)),
        ("estimated finish", when(job.estimated_finish)),
        ("trained tokens", "" if job.trained_tokens is None else f"{job.trained_tokens:,}"),
        ("progress", latest_progress(job, events)),
        ("error", f"{job.error.code}: {job.error.message}" if job.error and job.error.code
         else ""),
    ]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        if value:
            out.write(f"{name + ':':<{width + 1}} {value}\n")
