"""A reinforcement job's eval: its validation rewards as eval runs, seen through ``/v1/evals``.

OpenAI creates an eval for each reinforcement job and runs it on the validation file as the
job trains; tunegate does the same. When a reinforcement job with a validation file starts
training, the worker creates the job's eval in the job's project: its id is the job's with
``eval_`` for ``ftjob-`` (:func:`job_eval_id`, so creating it again after a crash finds it),
its testing criterion the job's grader, its rows the validation file's lines (``item`` is the
whole line, ``messages`` included). A job event names it. A ``multi`` grader's parts are the
criteria, each scored by its part's reward: OpenAI's SDK reads no ``multi`` criterion, and a
strict client would fail on every listing of the project's evals.

At each ``eval_interval`` the trainer samples answers to every validation prompt with the
current adapter and grades them with the job's grader (the grader engine, as for the training
rewards), and sends them with the step's metrics (``StepMetrics.samples``). The worker records
them as one ``completed`` run of the eval named ``step N``, with an output item per answer, in
one transaction and before the step's metrics event: a worker killed in between records the
step again from the trainer's journal, and the store keeps one run per name.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from tunegate import ids
from tunegate.domain import eval_requests
from tunegate.domain.datasets import DatasetError, iter_jsonl
from tunegate.domain.evals import Eval, EvalRun, OutputItem, RunStatus, RunTotals, no_error
from tunegate.domain.files import FileStorage
from tunegate.domain.jobs import FineTuningJob, now
from tunegate.graders import Grade, Grader, InvalidGrader, parse_grader, passed
from tunegate.store.base import Store
from tunegate.worker.eval_stage import shown_sample

log = logging.getLogger("tunegate.worker")

VALID = "valid"
# The rows' shape: an RFT line (tunegate.domain.rft_format) as the item.
ITEM_SCHEMA = {"type": "object", "properties": {"messages": {"type": "array"}},
               "required": ["messages"]}


def job_eval_id(job_id: str) -> str:
    """The eval of reinforcement job ``job_id``: ``ftjob-X`` -> ``eval_X``."""
    return ids.EVAL + job_id.removeprefix(ids.JOB)


def has_eval(job: FineTuningJob) -> bool:
    """Whether ``job`` gets an eval: a reinforcement job with a validation file."""
    return job.method.grader is not None and job.validation_file is not None


class JobEvals:
    def __init__(self, store: Store, storage: FileStorage, report_url: str):
        self.store = store
        self.storage = storage
        self.report_url = report_url
        # The validation file's lines by number, read once per job this worker records.
        self._lines: dict[str, dict[int, dict[str, Any]]] = {}

    def ensure(self, job: FineTuningJob) -> str | None:
        """Create ``job``'s eval if it has one and it does not exist yet; the job event that
        says so when it was created now, else ``None``."""
        if not has_eval(job):
            return None
        eval_id = job_eval_id(job.id)
        if self.store.evals.get_eval(job.project_id, eval_id) is not None:
            return None
        created = now()
        self.store.evals.add_eval(Eval(
            id=eval_id, project_id=job.project_id, created_at=created, updated_at=created,
            name=f"{job.id} validation", testing_criteria=_criteria(job),
            data_source_config=eval_requests.stored_config(
                {"item_schema": ITEM_SCHEMA, "include_sample_schema": True}),
            metadata={"fine_tuning_job_id": job.id}))
        return (f"Created eval {eval_id}: each validation (every eval_interval steps) is one "
                "of its runs, with the reward of every validation answer")

    def record(self, job: FineTuningJob, step: int, model: str,
               samples: Sequence[Mapping[str, Any]]) -> bool:
        """Record the step's validation answers as the run ``step N`` of the job's eval;
        ``False`` when there were none, the run is recorded already, or the eval is gone (a
        user deleted it: the job trains on)."""
        answers = [sample for sample in samples if sample.get("split") == VALID]
        if not answers or not has_eval(job):
            return False
        evaluation = self.store.evals.get_eval(job.project_id, job_eval_id(job.id))
        if evaluation is None:
            return False
        try:
            criteria = [(criterion["id"], parse_grader(
                {k: v for k, v in criterion.items() if k != "id"}))
                for criterion in evaluation.testing_criteria]
        except InvalidGrader:  # the job's grader as the API checked it: cannot happen
            log.exception("the eval of job %s holds a grader that does not parse", job.id)
            return False
        # One criterion: the job's grader, scored by the reward; several: a multi's parts.
        by_part = len(criteria) > 1 or job.method.grader.get("type") == "multi"  # type: ignore[union-attr]
        run = EvalRun(
            id=ids.new_id(ids.EVAL_RUN), eval_id=evaluation.id, project_id=job.project_id,
            created_at=now(), status=RunStatus.COMPLETED, model=model, name=f"step {step}",
            data_source={"type": "completions", "model": model,
                         "input_messages": {"type": "item_reference",
                                            "item_reference": "item.messages"},
                         "source": {"type": "file_id", "id": job.validation_file},
                         "sampling_params": None},
            metadata={"fine_tuning_job_id": job.id, "step": str(step)}, error=no_error(),
            totals=RunTotals(), report_url=self.report_url)
        lines = self._validation_lines(job)
        items = [self._item(run, criteria, by_part, index, answer, lines)
                 for index, answer in enumerate(answers)]
        return self.store.evals.add_graded_run(run, items)

    def _item(self, run: EvalRun, criteria: Sequence[tuple[str, Grader]], by_part: bool,
              index: int, answer: Mapping[str, Any],
              lines: Mapping[int, dict[str, Any]]) -> OutputItem:
        row = lines.get(int(answer.get("line") or 0), {})
        reward = answer.get("reward")
        parts = answer.get("sub_rewards") or {}
        results = []
        for criterion_id, grader in criteria:
            value = parts.get(grader.name) if by_part else reward
            score = float(value) if value is not None else 0.0
            result: dict[str, Any] = {"name": criterion_id, "type": grader.type,
                                      "score": score, "sample": None,
                                      "passed": value is not None and _passes(grader, score)}
            if by_part:
                result["reward"] = reward  # the multi's whole reward, beside its part's
            if reward is None:
                result["error"] = str(answer.get("error")
                                      or "the grader could not score this answer")
            results.append(result)
        shown = shown_sample(run.model, eval_requests.sampling(None))
        shown["input"] = [{"role": message.get("role", "user"),
                           "content": eval_requests.message_text(message.get("content"))}
                          for message in row.get("messages", []) if isinstance(message, dict)]
        shown["output"] = [{"role": "assistant", "content": str(answer.get("output_text", ""))}]
        return OutputItem(id=ids.new_id(ids.OUTPUT_ITEM), run_id=run.id, eval_id=run.eval_id,
                          project_id=run.project_id, created_at=now(),
                          status="pass" if all(r["passed"] for r in results) else "fail",
                          datasource_item_id=index, datasource_item=row, results=results,
                          sample=shown, usage={}, errored=reward is None)

    def _validation_lines(self, job: FineTuningJob) -> dict[int, dict[str, Any]]:
        cached = self._lines.get(job.id)
        if cached is None:
            cached = {}
            try:
                assert job.validation_file is not None
                cached = dict(iter_jsonl(self.storage.path(job.validation_file)))
            except (OSError, DatasetError):  # deleted since validation: items without rows
                log.warning("job %s: its validation file cannot be read for its eval", job.id)
            self._lines = {job.id: cached}  # one job at a time per stage
        return cached


def _passes(grader: Grader, score: float) -> bool:
    """An eval criterion's pass rule on a reward (1, or the grader's ``pass_threshold``)."""
    return passed(grader, Grade(score=score))


def _criteria(job: FineTuningJob) -> list[dict[str, Any]]:
    """The job's grader as an eval's stored criteria: itself, or a multi's parts, each named
    as its formula names it (the reward's parts are reported by that name)."""
    grader = parse_grader(job.method.grader)
    if grader.type != "multi":
        return [_criterion(grader.spec, grader.name)]
    return [_criterion(part.spec, name) for name, part in grader.parts]


def _criterion(spec: Mapping[str, Any], name: str) -> dict[str, Any]:
    """One stored criterion: its id, model graders' messages as EvalItems (as
    ``POST /v1/evals`` stores them)."""
    stored = {**spec, "name": name}
    if stored.get("type") == "text_similarity":
        # An eval's text_similarity criterion needs one (OpenAI's SDK requires it); 1 is the
        # pass rule a reward grader has without it.
        stored.setdefault("pass_threshold", 1.0)
    if stored.get("type") in ("score_model", "label_model") and isinstance(stored.get("input"),
                                                                          list):
        stored["input"] = [eval_requests.eval_item(message, f"grader.input.{index}")
                           for index, message in enumerate(stored["input"])]
    return {"id": eval_requests.criterion_id(name), **stored}
