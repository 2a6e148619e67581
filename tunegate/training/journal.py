"""What a run has reported (its metrics and checkpoint messages), kept beside its saved state.

The worker records a trainer's messages as they arrive. A worker killed after the trainer saved
an epoch's state but before it read that epoch's last messages would lose them for good: the
resumed run starts after the saved step and never sends them again (the step's metrics event and
its checkpoint would be missing). So the trainer writes everything it has reported so far to
``reported.jsonl`` just before each saved state (``run/``) and before ``result.json``, and a
worker taking the job over first records from it what the store lacks; the store keeps one copy
of a step's metrics and of a checkpoint, so recording twice is harmless.

The journal is written before the state: a kill between the two leaves it ahead of the state,
never behind, and the steps it holds beyond the state come again with equal figures (resuming
is exact), so either copy is right.
"""

from __future__ import annotations

import os
from pathlib import Path

from tunegate.training import state
from tunegate.training.messages import CheckpointSaved, StepMetrics, TrainerMessage, from_line, to_line

FILE = "reported.jsonl"
Reported = StepMetrics | CheckpointSaved


def save(work_dir: str | Path, reported: list[Reported]) -> None:
    """Replace the journal with ``reported`` (atomically: a reader sees the old or the new)."""
    path = Path(work_dir) / FILE
    path.parent.mkdir(parents=True, exist_ok=True)  # a pause at step 1 may be the first write
    with state.removed_on_failure(path.with_name(f".{FILE}.tmp-{os.getpid()}")) as temporary:
        temporary.write_text("".join(to_line(message) for message in reported), encoding="utf-8")
        os.replace(temporary, path)


def load(work_dir: str | Path) -> list[Reported]:
    """The journal's messages in the order they were reported; empty when there is none."""
    path = Path(work_dir) / FILE
    if not path.is_file():
        return []
    messages: list[TrainerMessage] = [from_line(line) for line in
                                      path.read_text(encoding="utf-8").splitlines() if line]
    return [m for m in messages if isinstance(m, StepMetrics | CheckpointSaved)]
