"""Whether a job's training fits the memory the trainer may use, decided before it starts.

The estimate (tunegate.training.estimate) needs the base's shape, read from its GGUF header or
``config.json`` in milliseconds, the dtype the trainer will load it in (tunegate.training.
precision, for this machine's CPU), and the limit: ``TUNEGATE_TRAINER_MEMORY_LIMIT``, else the
memory available when the job starts. A job that does not fit fails before its trainer starts
(``insufficient_memory``) instead of being killed minutes in; one that fits only with gradient
checkpointing gets it. Runs on a Ray node are planned by the node's memory, not here: no plan.
"""

from __future__ import annotations

import logging
from pathlib import Path

from tunegate.settings import Settings
from tunegate.training import estimate, precision
from tunegate.training.estimate import ModelShape, Plan

log = logging.getLogger("tunegate.memory_plan")

INSUFFICIENT_MEMORY = "insufficient_memory"
# The micro-batch of the CPU trainer (tunegate.training.trainer.CPU_TOKEN_BUDGET; torch there).
CPU_TOKEN_BUDGET = 1024


def base_shape(path: Path) -> ModelShape | None:
    """The shape of a base model file or folder; None when it cannot be read (the trainer
    then says what is wrong with the model)."""
    try:
        return ModelShape.of_folder(path) if path.is_dir() else ModelShape.of_gguf(path)
    except (OSError, ValueError, KeyError, TypeError, IndexError) as exc:
        log.warning("no memory estimate for %s: %s", path, exc)
        return None


def plan_job(settings: Settings, base_path: Path) -> Plan | None:
    """The plan of a job on ``base_path`` on this machine, or None (no estimate possible, or
    a Ray node trains it)."""
    if settings.executor != "local":
        return None
    shape = base_shape(base_path)
    limit = settings.trainer_memory_limit or estimate.available_memory()
    if shape is None or limit is None:
        return None
    try:
        dtype = precision.cpu_base_dtype()
    except ValueError:
        return None  # a bad TUNEGATE_TRAIN_DTYPE: the trainer fails with invalid_setting
    forced = {"on": True, "off": False}.get(settings.gradient_checkpointing)
    return estimate.plan(shape, dtype, CPU_TOKEN_BUDGET, limit, checkpointing=forced)


def describe(planned: Plan) -> str:
    """The event that names the estimate before training starts."""
    return (f"Memory estimate: {planned.estimate.describe()} of the "
            f"{estimate.gib(planned.limit)} the trainer may use"
            + ("; gradient checkpointing on" if planned.estimate.checkpointing else ""))
