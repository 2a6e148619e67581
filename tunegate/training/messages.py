"""What a trainer child tells its worker: typed messages, one JSON line each (torch-free).

Both sides use these classes: the child builds them and writes ``to_line``; the worker reads
``from_line`` and matches on the class. A line of an unknown ``kind`` (a worker and a trainer of
different versions) is an error, not a silently ignored dict.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from tunegate.training.spec import RunStatus, TrainingResult


@dataclass(frozen=True)
class Note:
    """A line for the job's event list."""

    message: str
    level: str = "info"  # info | warn | error


@dataclass(frozen=True)
class HyperparametersResolved:
    """The values "auto" became, sent before the first step."""

    resolved: dict[str, Any]


# One graded answer of StepMetrics.samples: ``split`` "train" or "valid"; ``line`` the 1-based
# line of the (training or validation) file its prompt came from; ``output_text`` the answer;
# ``reward`` the grader's score, or None when the grader failed on it (``error`` says why);
# ``sub_rewards`` a multi grader's parts by name ({} otherwise).
SAMPLE_KEYS = ("split", "line", "output_text", "reward", "sub_rewards", "error")


@dataclass(frozen=True)
class StepMetrics:
    """One optimizer step's figures; ``values`` holds train_*/valid_*/full_valid_* keys.

    ``learning_rate`` is the rate this step's update used (after warmup and decay);
    ``tokens_per_second`` the step's example tokens over the seconds of its forward, backward
    and update (validation and checkpoints left out), what a throughput chart wants.
    """

    step: int
    total_steps: int
    trained_tokens: int
    values: dict[str, float | None]
    estimated_finish_seconds: float | None = None
    learning_rate: float | None = None
    tokens_per_second: float | None = None
    # Reinforcement: the graded answers behind the step's rewards, one dict each (SAMPLE_KEYS):
    # every validation answer on a step that validated (the job's eval run for the step), and
    # a few of the step's training answers (shown on the job's dashboard page).
    samples: list[dict[str, Any]] = field(default_factory=list)

    def event_data(self) -> dict[str, Any]:
        """The metrics event's ``data`` as OpenAI shows it (step first, total_steps last), with
        tunegate's two additions for charts before total_steps; ``samples`` are not in it."""
        return {"step": self.step, **self.values, "learning_rate": self.learning_rate,
                "tokens_per_second": self.tokens_per_second, "total_steps": self.total_steps}


@dataclass(frozen=True)
class CheckpointSaved:
    """An epoch-end adapter written to ``path`` (a ``checkpoints/step-N`` folder)."""

    step: int
    path: str
    metrics: dict[str, float | None]


@dataclass(frozen=True)
class Failed:
    """The run cannot go on; ``code`` and ``message`` become the job's error."""

    code: str
    message: str
    param: str | None = None  # the request field at fault (training_file, model, ...)


TrainerMessage = Note | HyperparametersResolved | StepMetrics | CheckpointSaved | TrainingResult | Failed
Emit = Callable[[TrainerMessage], None]

_KINDS: dict[str, type[Any]] = {
    "message": Note,
    "hyperparameters": HyperparametersResolved,
    "metrics": StepMetrics,
    "checkpoint": CheckpointSaved,
    "result": TrainingResult,
    "failed": Failed,
}
_KIND_OF = {cls: kind for kind, cls in _KINDS.items()}


def to_line(message: TrainerMessage) -> str:
    """One JSON line (newline included) that :func:`from_line` turns back into ``message``."""
    return json.dumps({"kind": _KIND_OF[type(message)], **asdict(message)}) + "\n"


def from_line(line: str) -> TrainerMessage:
    data = json.loads(line)
    kind = data.pop("kind", None)
    cls = _KINDS.get(kind)  # type: ignore[arg-type]
    if cls is None:
        raise ValueError(f"unknown trainer message kind {kind!r}")
    names = {field.name for field in fields(cls)}
    if set(data) - names:
        raise ValueError(f"unexpected fields in a {kind!r} message: {sorted(set(data) - names)}")
    if cls is TrainingResult:
        data["status"] = RunStatus(data["status"])
    message: TrainerMessage = cls(**data)
    return message


def graded_sample(split: str, line: int, output_text: str, reward: float | None,
                  sub_rewards: dict[str, float] | None = None,
                  error: str | None = None) -> dict[str, Any]:
    """One entry of ``StepMetrics.samples`` (``SAMPLE_KEYS``): a ``train`` or ``valid``
    answer to the prompt of ``line``, with its reward (``None`` and ``error`` when the grader
    failed on it)."""
    return {"split": split, "line": line, "output_text": output_text, "reward": reward,
            "sub_rewards": dict(sub_rewards or {}), "error": error}


def note(text: str, level: str = "info") -> Note:
    return Note(message=text, level=level)
