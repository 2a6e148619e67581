"""The worker's eval stage: run one claimed eval run to its end.

Rows come from the run's data source (inline, or the ``evals`` file); rows that already have an
output item (a run resumed after its worker died) are skipped. Each remaining row becomes a
sample (a chat completion of the run's model for ``completions``, the row's own ``sample`` for
``jsonl``), is graded by every testing criterion and recorded at once: the output item and the
run's counts in one transaction, which the store refuses once the run is canceled, deleted or
taken over; the stage then stops. Samples are asked for ``eval_concurrency`` at a time, so the
serving pool's parallel slots are used: a run of 200 items is not 200 sequential requests.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

from tunegate import ids
from tunegate.domain import eval_requests
from tunegate.domain.evals import EvalRun, OutputItem, RunStatus, no_error
from tunegate.domain.jobs import now
from tunegate.errors import TunegateError
from tunegate.graders import (
    Grader,
    InvalidGrader,
    Sample,
    SandboxLimits,
    grade,
    parse_grader,
    passed,
)
from tunegate.graders.endpoint import EndpointModels, ModelCallFailed
from tunegate.graders.messages import UnknownVariable, referenced, render_template
from tunegate.worker.heartbeats import beating
from tunegate.worker.host import Host

log = logging.getLogger("tunegate.worker")


class RunFailed(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class Generated:
    """A row's sample, as graders see it and as the output item shows it."""

    sample: Sample
    shown: dict[str, Any]
    usage: dict[str, dict[str, int]] = field(default_factory=dict)
    error: dict[str, str] = field(default_factory=no_error)


class EvalStage:
    def __init__(self, host: Host, worker_id: str, models: EndpointModels | None = None):
        self.host = host
        self.store = host.store
        self.settings = host.settings
        self.worker_id = worker_id
        self.models = models or EndpointModels(self.settings.eval_base_url,
                                               self.settings.eval_api_key,
                                               self.settings.eval_concurrency)
        self.limits = SandboxLimits.configured(self.settings.python_grader_seconds,
                                               self.settings.python_grader_memory_mb)

    def run(self, run: EvalRun) -> None:
        try:
            criteria, rows = self._prepare(run)
            finished = self._grade_rows(run, criteria, rows)
        except RunFailed as exc:
            log.warning("eval run %s failed: %s", run.id, exc.message)
            self.store.evals.finish_run(run.id, self.worker_id, RunStatus.FAILED,
                                        {"code": exc.code, "message": exc.message})
            return
        except Exception as exc:  # a bug must fail the run, not hand it to the next worker
            log.exception("eval run %s failed", run.id)
            self.store.evals.finish_run(run.id, self.worker_id, RunStatus.FAILED,
                                        {"code": "internal_error", "message": repr(exc)[:1000]})
            return
        if finished:
            self.store.evals.finish_run(run.id, self.worker_id, RunStatus.COMPLETED)

    def _prepare(self, run: EvalRun) -> tuple[list[tuple[str, Grader]],
                                              Sequence[Mapping[str, Any]]]:
        evaluation = self.store.evals.get_eval(None, run.eval_id)
        if evaluation is None:
            raise RunFailed("eval_not_found", f"The eval {run.eval_id} was deleted.")
        criteria = []
        for index, spec in enumerate(evaluation.testing_criteria):
            grader_spec = {key: value for key, value in spec.items() if key != "id"}
            try:
                criteria.append((spec["id"], parse_grader(grader_spec,
                                                          f"testing_criteria.{index}")))
            except InvalidGrader as exc:
                raise RunFailed("invalid_grader", f"{exc.param}: {exc.message}") from exc
        return criteria, self._rows(run)

    def _rows(self, run: EvalRun) -> Sequence[Mapping[str, Any]]:
        source = run.data_source["source"]
        if source["type"] == "file_content":
            return list(source["content"])
        path = self.host.storage.path(source["id"])
        if not path.is_file():
            raise RunFailed("file_not_found", f"The file {source['id']} no longer exists.")
        try:
            return eval_requests.read_rows(path, self.settings.max_line_bytes, "data_source")
        except TunegateError as exc:
            raise RunFailed("invalid_data_source", exc.message) from exc

    def _grade_rows(self, run: EvalRun, criteria: list[tuple[str, Grader]],
                    rows: Sequence[Mapping[str, Any]]) -> bool:
        """Grade every unrecorded row, ``eval_concurrency`` at a time; whether the run got to
        its end (False: the store refused an item, the run is no longer this worker's)."""
        recorded = self.store.evals.recorded_rows(run.id)
        pending = [index for index in range(len(rows)) if index not in recorded]
        with ThreadPoolExecutor(max_workers=self.settings.eval_concurrency,
                                thread_name_prefix=f"eval-{run.id}") as pool:
            waiting: set[Future[OutputItem]] = {
                pool.submit(self._output_item, run, criteria, index, rows[index])
                for index in pending}
            while waiting:
                done, waiting = wait(waiting, return_when=FIRST_COMPLETED)
                for future in done:
                    if not self.store.evals.record_item(future.result(), self.worker_id):
                        log.info("eval run %s stopped: canceled, deleted or taken over", run.id)
                        for left in waiting:
                            left.cancel()
                        return False
        return True

    def _output_item(self, run: EvalRun, criteria: list[tuple[str, Grader]], index: int,
                     row: Mapping[str, Any]) -> OutputItem:
        item = row["item"]
        generated = self._sample(run, item, row)
        results, usage, errored = [], dict(generated.usage), bool(generated.error["code"])
        for criterion_id, grader in criteria:
            if generated.error["code"]:
                results.append({"name": criterion_id, "type": grader.type, "score": 0.0,
                                "passed": False, "sample": None})
                continue
            graded = grade(grader, generated.sample, item, self.models, limits=self.limits)
            errored = errored or graded.failed
            results.append({"name": criterion_id, "type": grader.type, "score": graded.score,
                            "passed": passed(grader, graded), "sample": None,
                            **({"errors": graded.errors} if graded.failed else {})})
            for model, counts in graded.usage.items():
                _add_usage(usage, model, counts)
        status = "pass" if results and all(r["passed"] for r in results) else "fail"
        return OutputItem(id=ids.new_id(ids.OUTPUT_ITEM), run_id=run.id, eval_id=run.eval_id,
                          project_id=run.project_id, created_at=now(), status=status,
                          datasource_item_id=index, datasource_item=dict(item),
                          results=results, sample=generated.shown, usage=usage,
                          errored=errored)

    # Samples --------------------------------------------------------------------------------

    def _sample(self, run: EvalRun, item: Mapping[str, Any],
                row: Mapping[str, Any]) -> Generated:
        if run.data_source["type"] == "completions":
            return self._completion(run, item)
        return _given_sample(run, row.get("sample"))

    def _completion(self, run: EvalRun, item: Mapping[str, Any]) -> Generated:
        source = run.data_source
        params = eval_requests.sampling(source.get("sampling_params"))
        shown = shown_sample(run.model, params)
        try:
            messages = _input_messages(source["input_messages"], item)
        except (UnknownVariable, ValueError) as exc:
            return _failed(shown, "invalid_input_messages", str(exc))
        shown["input"] = [{"role": m["role"], "content": eval_requests.message_text(m["content"])}
                          for m in messages]
        try:
            response = self.models.chat(
                run.model, messages, temperature=params["temperature"], top_p=params["top_p"],
                seed=params["seed"], max_completion_tokens=params["max_completion_tokens"])
        except ModelCallFailed as exc:
            return _failed(shown, exc.code, exc.message)
        choice = response["choices"][0]
        message = choice.get("message") or {}
        text = message.get("content") or ""
        usage = response.get("usage") or {}
        counts = {"prompt_tokens": int(usage.get("prompt_tokens", 0)),
                  "completion_tokens": int(usage.get("completion_tokens", 0)),
                  "total_tokens": int(usage.get("total_tokens", 0)),
                  "cached_tokens": int((usage.get("prompt_tokens_details") or {})
                                       .get("cached_tokens") or 0)}
        shown.update(output=[{"role": "assistant", "content": text}],
                     finish_reason=choice.get("finish_reason") or "", usage=counts)
        totals: dict[str, dict[str, int]] = {}
        _add_usage(totals, run.model, counts)
        return Generated(Sample(text, list(message.get("tool_calls") or []),
                                list(response["choices"])), shown, totals)


def _input_messages(spec: Mapping[str, Any], item: Mapping[str, Any]) -> list[dict[str, Any]]:
    if spec["type"] == "template":
        rendered = render_template(spec["template"], item)
    else:
        rendered = referenced(spec["item_reference"], item)
        if not isinstance(rendered, list):
            raise ValueError(f"{spec['item_reference']} is not a list of messages")
    messages = []
    for message in rendered:
        if not isinstance(message, Mapping) or "role" not in message:
            raise ValueError("an input message has no role")
        messages.append({"role": message["role"],
                         "content": eval_requests.message_text(message.get("content"))})
    return messages


def shown_sample(model: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """An output item's ``sample`` with every key OpenAI's SDK requires, none of them null."""
    return {"input": [], "output": [], "finish_reason": "", "model": model,
            "usage": {"total_tokens": 0, "completion_tokens": 0, "prompt_tokens": 0,
                      "cached_tokens": 0},
            "error": no_error(), "temperature": float(params["temperature"]),
            "max_completion_tokens": int(params["max_completion_tokens"]),
            "top_p": float(params["top_p"]), "seed": int(params["seed"])}


def _failed(shown: dict[str, Any], code: str, message: str) -> Generated:
    shown["error"] = {"code": code, "message": message[:1000]}
    return Generated(Sample(""), shown, error=shown["error"])


def _given_sample(run: EvalRun, sample: Any) -> Generated:
    """A jsonl row's own ``sample``: ``output_text`` or chat ``choices`` (the first one's
    message), with ``output_tools`` where given."""
    shown = shown_sample(run.model, eval_requests.sampling(None))
    if not isinstance(sample, Mapping):
        return _failed(shown, "missing_sample", "The row has no sample to grade (a jsonl run "
                       "grades rows {\"item\": ..., \"sample\": {\"output_text\": ...}}).")
    choices = list(sample.get("choices") or [])
    text = sample.get("output_text")
    if not isinstance(text, str):
        first = choices[0].get("message", {}) if choices and isinstance(choices[0], Mapping) else {}
        text = first.get("content") or ""
    shown["output"] = [{"role": "assistant", "content": text}]
    shown["finish_reason"] = str(sample.get("finish_reason") or "")
    return Generated(Sample(text, list(sample.get("output_tools") or []), choices), shown)


def _add_usage(totals: dict[str, dict[str, int]], model: str,
               counts: Mapping[str, int]) -> None:
    total = totals.setdefault(model, {"invocation_count": 0, "prompt_tokens": 0,
                                      "completion_tokens": 0, "total_tokens": 0,
                                      "cached_tokens": 0})
    total["invocation_count"] += 1
    for key in ("prompt_tokens", "completion_tokens", "total_tokens", "cached_tokens"):
        total[key] += int(counts.get(key, 0))
    if not counts.get("total_tokens"):
        total["total_tokens"] = total["prompt_tokens"] + total["completion_tokens"]


def heartbeat(host: Host, run_id: str, worker_id: str) -> contextlib.AbstractContextManager[None]:
    """Beat the run's heartbeat while the body runs."""
    return beating(lambda: host.store.evals.heartbeat_run(run_id, worker_id, time.time()),
                   host.settings.heartbeat_timeout, f"eval run {run_id}")
