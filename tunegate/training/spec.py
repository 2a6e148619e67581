"""What the worker asks the trainer to do, and what it gets back (torch-free, JSON round-trip).

``TrainingSpec`` crosses a process boundary (the worker writes it, the trainer child reads it),
so it holds only JSON-able values and ``from_json(to_json(s)) == s``.
"""

from __future__ import annotations

import enum
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from tunegate.domain.methods import Method
from tunegate.errors import InvalidRequest
from tunegate.training.errors import TrainingFailed

RESULT_FILE = "result.json"


class RunStatus(enum.StrEnum):
    """How a training run ended (``failed`` only on the worker's side: a child that failed says
    so with a ``Failed`` message, or dies)."""

    SUCCEEDED = "succeeded"
    PAUSED = "paused"  # state saved in run/; a resume continues exactly
    CANCELLED = "cancelled"
    FAILED = "failed"


@dataclass(frozen=True)
class BaseModelRef:
    """A base model: a GGUF file (``path`` is its folder, ``gguf_file`` its name) or an HF folder."""

    name: str
    kind: Literal["gguf", "hf"]
    path: str
    gguf_file: str | None = None


@dataclass(frozen=True)
class TrainingSpec:
    """One training run.

    ``work_dir`` is the job's folder; the trainer owns its layout: ``run/`` (resumable state),
    ``checkpoints/step-N/`` (``adapter/`` + ``metrics.json``), ``adapter/`` (the final PEFT
    adapter) and ``results.csv``. ``cache_dir`` holds converted bases (``<name>/``).
    ``method``'s hyperparameters may be ``"auto"`` (see :mod:`tunegate.training.hyperparams`).
    """

    job_id: str
    base_model: BaseModelRef
    training_file: str
    work_dir: str
    cache_dir: str
    method: Method = field(default_factory=Method)
    validation_file: str | None = None
    seed: int = 0
    max_seq_len: int = 2048
    init_adapter: str | None = None
    resume: bool = False
    # Recompute each layer's activations in backward (the worker's memory plan decides).
    gradient_checkpointing: bool = False
    # Reinforcement: the OpenAI-compatible base URL (ending in /v1) that model graders and
    # cosine embeddings call while training, and its key (the worker fills both).
    grader_endpoint: str | None = None
    grader_api_key: str | None = None
    # Reinforcement: the python grader's sandbox limits, the worker's settings
    # (TUNEGATE_PYTHON_GRADER_SECONDS, TUNEGATE_PYTHON_GRADER_MEMORY_MB): the trainer child
    # grades with the limits the API's grader runs have. ``None``: OpenAI's.
    python_grader_seconds: float | None = None
    python_grader_memory_mb: int | None = None

    def to_json(self) -> str:
        """A JSON object that :meth:`from_json` turns back into an equal spec."""
        return json.dumps({**asdict(self), "method": self.method.to_wire()}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> TrainingSpec:
        """Parse :meth:`to_json` output; unknown keys are an error (a version mismatch).

        A method the domain refuses (a hyperparameter out of bounds) raises ``TrainingFailed``
        with the domain's code, message and param: the run fails here, before the trainer
        imports torch or reads a file.
        """
        data = json.loads(text)
        data["base_model"] = BaseModelRef(**data["base_model"])
        try:
            data["method"] = Method.from_wire(data["method"])
        except InvalidRequest as exc:
            raise TrainingFailed(str(exc.code), exc.message, exc.param) from exc
        return cls(**data)


@dataclass(frozen=True)
class TrainingResult:
    """How a run ended without failing.

    ``adapter_dir`` and ``results_csv`` are set only when ``status == "succeeded"``;
    ``trained_tokens`` counts every token of every example once per epoch trained so far
    (OpenAI bills prompt tokens too); ``hyperparameters`` holds the resolved values.
    """

    status: RunStatus
    adapter_dir: str | None
    trained_tokens: int
    results_csv: str | None
    hyperparameters: dict[str, Any]

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> TrainingResult:
        data = json.loads(text)
        return cls(**{**data, "status": RunStatus(data["status"])})

    def save(self, work_dir: str | Path) -> None:
        """Record a finished run in ``work_dir/result.json`` (atomically): from then on the
        training is done, whatever happens to the worker before the job is published."""
        path = Path(work_dir) / RESULT_FILE
        temporary = path.with_name(f".{RESULT_FILE}.tmp-{os.getpid()}")
        temporary.write_text(self.to_json(), encoding="utf-8")
        os.replace(temporary, path)

    @classmethod
    def saved(cls, work_dir: str | Path) -> TrainingResult | None:
        """The finished run recorded in ``work_dir``, if training got that far."""
        path = Path(work_dir) / RESULT_FILE
        return cls.from_json(path.read_text(encoding="utf-8")) if path.is_file() else None
