"""``tunegate eval --job ftjob-…``: a finished job's validation file graded in one step, the
fine-tuned model beside its base, without writing an eval by hand.

The validation file's examples become eval items ``{"messages": [...], "answer": "..."}``: the
prompt is the example's messages up to its last assistant answer, and that answer is the
reference (``validation_items``; the dashboard's ``validation.js`` reads a file the same way).
The items are uploaded with purpose ``evals``; an eval is created with one criterion, by default
a ``text_similarity`` of the sample against the answer (``default_criterion``); then one run of
the fine-tuned model and one of its base answer the same messages, and the table shows both.
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from tunegate.client.evaluate import FINISHED, POLL_SECONDS, criteria_table

if TYPE_CHECKING:
    from openai import OpenAI

DEFAULT_METRIC = "rouge_l"
# ROUGE-L F1 of 0.6: most of the reference's words, in order. A wrong fact in a short sentence
# (one word of eight) still passes; pick a string_check with --grader where one word matters.
DEFAULT_THRESHOLD = 0.6
ITEM_SCHEMA: dict[str, object] = {
    "type": "object", "properties": {"messages": {"type": "array"}, "answer": {"type": "string"}},
    "required": ["messages", "answer"]}


class NotEvaluable(Exception):
    """The job cannot be evaluated this way (why, for the user)."""


def text_of(content: Any) -> str:
    """A message's content as text: a string, or the text of its parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content
                       if isinstance(part, Mapping) and isinstance(part.get("text"), str))
    return ""


def example_item(example: Mapping[str, Any]) -> dict[str, Any] | None:
    """One training example as an eval item, or None when it has no answer to compare with.

    Chat examples: the messages before the last one, which must be the assistant's; a
    prompt/completion pair: the prompt as a user message; a preference pair: its input and the
    preferred answer."""
    if isinstance(example.get("messages"), list):
        messages, answer = example["messages"][:-1], example["messages"][-1:]
    elif isinstance(example.get("prompt"), str):
        messages = [{"role": "user", "content": example["prompt"]}]
        answer = [{"role": "assistant", "content": example.get("completion")}]
    elif isinstance(example.get("input"), Mapping):
        messages = list(example["input"].get("messages") or [])
        answer = list(example.get("preferred_output") or [])[-1:]
    else:
        return None
    if not messages or not answer or not isinstance(answer[0], Mapping) \
            or answer[0].get("role") != "assistant":
        return None
    text = text_of(answer[0].get("content"))
    if not text.strip():
        return None
    prompt = [{"role": message["role"], "content": text_of(message.get("content"))}
              for message in messages if isinstance(message, Mapping) and "role" in message]
    return {"messages": prompt, "answer": text}


def validation_items(lines: Iterable[str]) -> list[dict[str, Any]]:
    """The eval items of a validation file's lines (blank lines and examples without an
    assistant answer skipped)."""
    items = []
    for line in lines:
        if not line.strip():
            continue
        example = json.loads(line)
        item = example_item(example) if isinstance(example, Mapping) else None
        if item is not None:
            items.append(item)
    return items


def default_criterion(metric: str = DEFAULT_METRIC,
                      threshold: float = DEFAULT_THRESHOLD) -> dict[str, Any]:
    return {"type": "text_similarity", "name": f"{metric} against the validation answer",
            "input": "{{ sample.output_text }}", "reference": "{{ item.answer }}",
            "evaluation_metric": metric, "pass_threshold": threshold}


def completions_source(model: str, file_id: str, max_tokens: int) -> dict[str, Any]:
    """The runs' data source: each item's own messages, answered at temperature 0."""
    return {"type": "completions", "model": model,
            "source": {"type": "file_id", "id": file_id},
            "input_messages": {"type": "item_reference", "item_reference": "item.messages"},
            "sampling_params": {"max_completion_tokens": max_tokens, "temperature": 0}}


def evaluable_job(client: OpenAI, job_id: str) -> Any:
    job = client.fine_tuning.jobs.retrieve(job_id)
    if job.status != "succeeded" or not job.fine_tuned_model:
        raise NotEvaluable(f"{job_id} is {job.status}: only a succeeded job has a model to "
                           "evaluate.")
    if not job.validation_file:
        raise NotEvaluable(f"{job_id} has no validation file: pass an eval and --file instead.")
    return job


def evaluate_job(client: OpenAI, job_id: str, *, criterion: Mapping[str, Any] | None,
                 max_tokens: int, say: Callable[[str], None]) -> list[dict[str, Any]]:
    """Create the eval of ``job_id``'s validation file, run its fine-tuned model and its base,
    wait for both and print them side by side; both runs as the API answered them last
    (the fine-tuned model's first)."""
    job = evaluable_job(client, job_id)
    text = client.files.content(job.validation_file).text
    items = validation_items(text.splitlines())
    if not items:
        raise NotEvaluable(f"{job.validation_file} has no example ending in an assistant "
                           "answer to compare with.")
    rows = "".join(json.dumps({"item": item}) + "\n" for item in items).encode()
    uploaded = client.files.create(file=(f"{job_id}-validation-items.jsonl", io.BytesIO(rows)),
                                   purpose="evals")
    evaluation = client.evals.create(
        name=f"{job_id} validation", metadata={"fine_tuning_job": job_id,
                                               "validation_file": job.validation_file},
        data_source_config={"type": "custom", "item_schema": ITEM_SCHEMA},
        testing_criteria=[dict(criterion or default_criterion())])  # type: ignore[list-item]
    say(f"eval {evaluation.id}: {len(items)} items of {job.validation_file}")
    created = [client.evals.runs.create(
        evaluation.id, name=model,
        data_source=completions_source(model, uploaded.id, max_tokens))  # type: ignore[arg-type]
        for model in (job.fine_tuned_model, job.model)]
    for run in created:
        say(f"run {run.id} on {run.model}")
    runs = follow_runs(client, evaluation.id, [run.id for run in created])
    names = {getattr(c, "id", ""): c.name for c in evaluation.testing_criteria}
    for line in comparison_table(runs, names, ["fine-tuned", "base"]):
        say(line)
    return runs


def follow_runs(client: OpenAI, eval_id: str, run_ids: list[str]) -> list[dict[str, Any]]:
    """Each run as it is once all have ended."""
    while True:
        runs = [client.evals.runs.retrieve(run_id, eval_id=eval_id).model_dump()
                for run_id in run_ids]
        if all(run["status"] in FINISHED for run in runs):
            return runs
        time.sleep(POLL_SECONDS)


def comparison_table(runs: Sequence[Mapping[str, Any]], names: Mapping[str, str],
                     titles: Sequence[str]) -> list[str]:
    """Each run's per-criterion table under its title and model, one after the other, with
    a line that says which passed more items."""
    lines: list[str] = []
    for title, run in zip(titles, runs, strict=True):
        lines.append(f"{title}: {run['model']} ({run['status']})")
        lines.extend(f"  {line}" for line in criteria_table(run, names))
    passed = [run["result_counts"]["passed"] for run in runs]
    total = runs[0]["result_counts"]["total"] if runs else 0
    lines.append("items passed: " + ", ".join(
        f"{title} {count}/{total}" for title, count in zip(titles, passed, strict=True)))
    return lines
