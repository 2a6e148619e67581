"""Evals, their runs and output items: the domain objects and their OpenAI wire shapes.

An eval says how to grade (the item schema and testing criteria); a run grades one data source
with it, as a durable unit of work a worker claims like a fine-tuning job; an output item is one
graded data item. A run's counts are kept on its row and grow in the same transaction that
records each output item, so they always agree with the items listed.

Values OpenAI's examples show as ``null`` but its SDK types as required (``error``, the usage and
criteria lists, a jsonl run's ``model``) are sent in forms a strict SDK accepts (docs/evals.md).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


class RunStatus(enum.StrEnum):
    QUEUED = "queued"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELED = "canceled"  # one l, as OpenAI's evals spell it (fine-tuning has two)


FINISHED = frozenset({RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELED})
UNFINISHED = frozenset({RunStatus.QUEUED, RunStatus.IN_PROGRESS})
OUTPUT_ITEM_STATUSES = ("pass", "fail")


def no_error() -> dict[str, str]:
    """OpenAI's EvalApiError of something that did not fail (strict-SDK-safe, not null)."""
    return {"code": "", "message": ""}


@dataclass(frozen=True)
class Eval:
    id: str
    project_id: str
    created_at: int
    updated_at: int
    name: str
    data_source_config: dict[str, Any]
    testing_criteria: list[dict[str, Any]]
    metadata: dict[str, str] | None

    def to_api(self) -> dict[str, Any]:
        return {"object": "eval", "id": self.id, "name": self.name,
                "data_source_config": self.data_source_config,
                "testing_criteria": self.testing_criteria, "created_at": self.created_at,
                "metadata": self.metadata}


@dataclass
class RunTotals:
    """What a run's recorded output items add up to (kept on the run's row)."""

    passed: int = 0
    failed: int = 0
    errored: int = 0
    # criterion id -> [passed, failed]
    criteria: dict[str, list[int]] = field(default_factory=dict)
    # model -> invocation_count, prompt_tokens, completion_tokens, total_tokens, cached_tokens
    usage: dict[str, dict[str, int]] = field(default_factory=dict)

    @classmethod
    def from_json(cls, value: Mapping[str, Any] | None) -> RunTotals:
        value = value or {}
        return cls(passed=value.get("passed", 0), failed=value.get("failed", 0),
                   errored=value.get("errored", 0),
                   criteria={key: list(pair) for key, pair in value.get("criteria", {}).items()},
                   usage={key: dict(counts) for key, counts in value.get("usage", {}).items()})

    def to_json(self) -> dict[str, Any]:
        return {"passed": self.passed, "failed": self.failed, "errored": self.errored,
                "criteria": self.criteria, "usage": self.usage}

    def add(self, item: OutputItem) -> None:
        if item.errored:
            self.errored += 1
        elif item.status == "pass":
            self.passed += 1
        else:
            self.failed += 1
        for result in item.results:
            pair = self.criteria.setdefault(result["name"], [0, 0])
            pair[0 if result["passed"] else 1] += 1
        for model, counts in item.usage.items():
            total = self.usage.setdefault(model, {"invocation_count": 0, "prompt_tokens": 0,
                                                  "completion_tokens": 0, "total_tokens": 0,
                                                  "cached_tokens": 0})
            for key, number in counts.items():
                total[key] = total.get(key, 0) + int(number)

    @property
    def total(self) -> int:
        return self.passed + self.failed + self.errored


@dataclass(frozen=True)
class EvalRun:
    id: str
    eval_id: str
    project_id: str
    created_at: int
    status: RunStatus
    model: str
    name: str
    data_source: dict[str, Any]
    metadata: dict[str, str] | None
    error: dict[str, str]
    totals: RunTotals
    report_url: str
    worker_id: str | None = None
    heartbeat_at: float | None = None

    def to_api(self) -> dict[str, Any]:
        totals = self.totals
        return {
            "object": "eval.run", "id": self.id, "eval_id": self.eval_id,
            "status": self.status.value, "model": self.model, "name": self.name,
            "created_at": self.created_at, "report_url": self.report_url,
            "result_counts": {"total": totals.total, "errored": totals.errored,
                              "failed": totals.failed, "passed": totals.passed},
            "per_model_usage": [{"model_name": model, **counts}
                                for model, counts in totals.usage.items()],
            "per_testing_criteria_results": [
                {"testing_criteria": name, "passed": pair[0], "failed": pair[1]}
                for name, pair in totals.criteria.items()],
            "data_source": self.data_source, "metadata": self.metadata, "error": self.error,
        }


@dataclass(frozen=True)
class OutputItem:
    """One graded data item. ``usage`` (model -> token counts, with ``invocation_count``) is
    what the run's ``per_model_usage`` adds up; ``errored``: the sample could not be made or a
    grader could not score it."""

    id: str
    run_id: str
    eval_id: str
    project_id: str
    created_at: int
    status: str
    datasource_item_id: int
    datasource_item: dict[str, Any]
    results: list[dict[str, Any]]
    sample: dict[str, Any]
    usage: dict[str, dict[str, int]]
    errored: bool

    def to_api(self) -> dict[str, Any]:
        return {"object": "eval.run.output_item", "id": self.id, "run_id": self.run_id,
                "eval_id": self.eval_id, "created_at": self.created_at, "status": self.status,
                "datasource_item_id": self.datasource_item_id,
                "datasource_item": self.datasource_item, "results": self.results,
                "sample": self.sample}
