"""Rewards of sampled completions, from the grader engine (:mod:`tunegate.graders`).

Each completion is graded as an eval grades a sample: ``sample.output_text`` is its text,
``sample.output_json`` that text parsed when it parses, and ``item`` is its line's other keys.
The samples of a step are graded concurrently (``GRADER_THREADS``): a Python grader runs each
call in a fresh sandboxed process (about 35 ms each on 2 cores, 20 ms each with four at once;
the sandbox engine starts one process per call by design, for isolation, so there is no warm
process to keep), and model graders wait on HTTP.

A reward is an error on its sample, counted and reported, when the grader flags a failure
(OpenAI's ``metadata.errors``), when it is not a finite number, or when it lies outside the
range the grader declares (``score_model``'s ``range``). Such a sample takes no part in its
group's advantages. A grader failing on most samples is not a reward of zero: past
``MAX_ERROR_SHARE`` of a step's samples, the run fails, quoting the first failure.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from tunegate.graders import Grade, Grader, GraderModels, Sample, SandboxLimits, grade
from tunegate.training.errors import TrainingFailed

GRADER_THREADS = 4
MAX_ERROR_SHARE = 0.5
GRADER_FAILED = "grader_failed"


@dataclass(frozen=True)
class Reward:
    """One completion's reward, or ``error`` (why it has none); ``parts`` holds a multi
    grader's sub-scores by name."""

    value: float | None
    parts: Mapping[str, float] = field(default_factory=dict)
    error: str | None = None


def sub_grader_names(grader: Grader) -> list[str]:
    """The names of a multi grader's parts (one metric each); none for other graders."""
    return [name for name, _ in grader.parts] if grader.type == "multi" else []


def reward_of(grader: Grader, result: Grade) -> Reward:
    """``result`` as a reward, or the error that makes it none."""
    if result.failed:
        flags = [f"{flag}: {value}" if isinstance(value, str) else flag
                 for flag, value in result.errors.items() if value]
        return Reward(None, error="; ".join(flags))
    score = result.score
    if not isinstance(score, int | float) or not math.isfinite(score):
        return Reward(None, error=f"the grader's score {score!r} is not a finite number")
    bounds = grader.spec.get("range")
    if isinstance(bounds, list | tuple) and len(bounds) == 2 and \
            not bounds[0] <= score <= bounds[1]:
        return Reward(None, error=f"the grader's score {score} is outside its range {bounds}")
    return Reward(float(score), dict(result.sub_scores))


class Rewarder:
    """Grades completions with one grader; owns the thread pool of its concurrent calls."""

    def __init__(self, grader: Grader, models: GraderModels | None = None,
                 limits: SandboxLimits | None = None, threads: int = GRADER_THREADS):
        self.grader = grader
        self.models = models
        self.limits = limits
        self.pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="grader")

    def close(self) -> None:
        self.pool.shutdown(wait=True)
        close_models = getattr(self.models, "close", None)
        if close_models is not None:
            close_models()

    def rewards(self, texts: Sequence[str], items: Sequence[Mapping[str, Any]]) -> list[Reward]:
        """One reward per (text, item), in order."""
        def one(pair: tuple[str, Mapping[str, Any]]) -> Reward:
            text, item = pair
            result = grade(self.grader, Sample(output_text=text), item, self.models,
                           limits=self.limits)
            return reward_of(self.grader, result)

        return list(self.pool.map(one, zip(texts, items, strict=True)))


def check_error_share(rewards: Sequence[Reward]) -> None:
    """Fail the run when the grader failed on most of a step's samples."""
    errors = [r.error for r in rewards if r.error is not None]
    if rewards and len(errors) > MAX_ERROR_SHARE * len(rewards):
        raise TrainingFailed(GRADER_FAILED, f"The grader failed on {len(errors)} of "
                             f"{len(rewards)} sampled completions of a step, so there is no "
                             f"reward to learn from. First failure: {errors[0]}",
                             "method.reinforcement.grader")
