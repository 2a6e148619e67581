"""Whether a job's training fits the memory the trainer may use, and how long it will take,
decided before it starts.

The estimate (tunegate.training.estimate) needs the base's shape, read from its GGUF header or
``config.json`` in milliseconds, the dtype the trainer will load it in (tunegate.training.
precision, for this machine's CPU), and the limit: ``TUNEGATE_TRAINER_MEMORY_LIMIT``, else the
memory available when the job starts. A job that does not fit fails before its trainer starts
(``insufficient_memory``) instead of being killed minutes in; one that fits only with gradient
checkpointing gets it. Runs on a Ray node are planned by the node's memory, not here: no plan.

The plan is made twice: when the job's files are validated (the estimate becomes an event and
``estimated_finish`` from ``queued`` on; a job over a configured limit fails there) and again
when training starts (the memory then free decides). The duration is the tokens to train (the
file read with the base's tokenizer, as the worker's length check reads it, times the epochs)
at this machine's measured speed for a base of that size (tunegate.worker.train_speed), until
the trainer's own per-step estimate replaces it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from tunegate.domain.architectures import UnsupportedArchitecture
from tunegate.domain.jobs import now
from tunegate.domain.methods import Method
from tunegate.settings import Settings
from tunegate.training import estimate, hyperparams, precision
from tunegate.training.data import LengthTally
from tunegate.training.errors import TrainingFailed
from tunegate.training.estimate import ModelShape, Plan
from tunegate.training.length_check import check_lengths, file_tokenizer
from tunegate.training.model_cache import cache_folder, cached_folder
from tunegate.training.spec import BaseModelRef
from tunegate.worker import train_speed

log = logging.getLogger("tunegate.memory_plan")

INSUFFICIENT_MEMORY = "insufficient_memory"
# The micro-batch of the CPU trainer (tunegate.training.trainer.CPU_TOKEN_BUDGET; torch there).
CPU_TOKEN_BUDGET = 1024


@dataclass(frozen=True)
class JobPlan:
    shape: ModelShape
    memory: Plan


def base_shape(path: Path) -> ModelShape | None:
    """The shape of a base model file or folder; None when it cannot be read (the trainer
    then says what is wrong with the model)."""
    try:
        return ModelShape.of_folder(path) if path.is_dir() else ModelShape.of_gguf(path)
    except (OSError, ValueError, KeyError, TypeError, UnsupportedArchitecture) as exc:
        log.warning("no memory estimate for %s: %s", path, exc)
        return None


def plan_job(settings: Settings, ref: BaseModelRef) -> JobPlan | None:
    """The plan of a job on ``ref`` on this machine, or None (no estimate possible, or a Ray
    node trains it)."""
    if settings.executor != "local":
        return None
    base_path = Path(ref.path) / ref.gguf_file if ref.kind == "gguf" and ref.gguf_file \
        else Path(ref.path)
    shape = base_shape(base_path)
    limit = settings.trainer_memory_limit or estimate.available_memory()
    if shape is None or limit is None:
        return None
    try:
        dtype = precision.cpu_base_dtype()
    except ValueError:
        return None  # a bad TUNEGATE_TRAIN_DTYPE: the trainer fails with invalid_setting
    forced = {"on": True, "off": False}.get(settings.gradient_checkpointing)
    converting = ref.kind == "gguf" and not cache_folder(ref, settings.model_cache, dtype).is_dir()
    return JobPlan(shape, estimate.plan(shape, dtype, CPU_TOKEN_BUDGET, limit,
                                        checkpointing=forced, converting=converting))


def tokens_to_train(settings: Settings, ref: BaseModelRef, training_file: Path,
                    method: Method) -> int | None:
    """Tokens the run will train (every epoch), or None where the base's tokenizer is not on
    disk yet (its first job converts it) or the file cannot be read as the trainer will."""
    tokenizer = file_tokenizer(cached_folder(ref, settings.model_cache))
    if tokenizer is None:
        return None
    try:
        tally = check_lengths(training_file, tokenizer, settings.max_seq_len,
                              method=method.type)
    except (TrainingFailed, OSError, ValueError):
        return None  # the trainer says what is wrong with the file
    return tokens_of(tally, method)


def tokens_of(tally: LengthTally, method: Method) -> int:
    """The tokens a run trains over every epoch, from its training file's tally."""
    return tally.n_tokens * hyperparams.resolve(method, tally.n_examples - tally.n_dropped).n_epochs


def training_seconds(settings: Settings, shape: ModelShape, tokens: int) -> float:
    """How long the run takes on this machine: its tokens at the speed measured for the
    nearest base size, plus that run's seconds outside its steps."""
    speed = (train_speed.measured(settings.data_dir, shape.n_params)
             or train_speed.default(shape.n_params))
    return speed.overhead_seconds + estimate.estimate_seconds(shape, tokens, speed.flops)


def announcement(settings: Settings, planned: JobPlan,
                 tokens: int | None) -> tuple[str, dict[str, object] | None]:
    """The plan's event text and the job's changes: ``estimated_finish`` from now where the
    tokens to train are known (None: the trainer's per-step estimate sets it later). Said when
    the job is queued and again when it starts."""
    seconds = training_seconds(settings, planned.shape, tokens) if tokens else None
    changes: dict[str, object] | None = (
        {"estimated_finish": now() + int(seconds)} if seconds is not None else None)
    return describe(planned.memory, tokens, seconds), changes


def describe(planned: Plan, tokens: int | None = None, seconds: float | None = None) -> str:
    """The event that names the estimate before training starts."""
    text = (f"Memory estimate: {planned.estimate.describe()} of the "
            f"{estimate.gib(planned.limit)} the trainer may use"
            + ("; gradient checkpointing on" if planned.estimate.checkpointing else ""))
    if tokens is not None and seconds is not None:
        text += f". Duration estimate: {tokens} tokens to train, about {_duration(seconds)}"
    return text


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{max(1, round(seconds))} s"
    if seconds < 90 * 60:
        return f"{round(seconds / 60)} min"
    return f"{seconds / 3600:.1f} h"
