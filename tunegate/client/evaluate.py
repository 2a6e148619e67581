"""``tunegate eval EVAL_ID --model M --file DATA.jsonl``: run an eval against one model from the
command line and print the per-criterion table.

The rows of ``DATA.jsonl`` (``{"item": {...}}`` a line) are uploaded with purpose ``evals``; the
model answers ``--prompt`` (a user message whose ``{{ item.… }}`` placeholders are filled from
each item), or, with ``--item-reference item.messages``, the message list each item carries.
The run is followed until it ends; the table counts each criterion's passes and failures.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from openai import OpenAI

POLL_SECONDS = 1.0
FINISHED = ("completed", "failed", "canceled")


def input_messages(prompt: str | None, item_reference: str | None) -> dict[str, Any]:
    if item_reference:
        return {"type": "item_reference", "item_reference": item_reference}
    return {"type": "template", "template": [{"role": "user",
                                              "content": prompt or "{{ item.input }}"}]}


def criteria_table(run: Mapping[str, Any], names: Mapping[str, str]) -> list[str]:
    """The run's counts, one line per criterion (by its name) and a total line."""
    rows = [("criterion", "passed", "failed", "pass rate")]
    for entry in run["per_testing_criteria_results"]:
        passed, failed = entry["passed"], entry["failed"]
        rate = f"{passed / (passed + failed):.0%}" if passed + failed else "-"
        rows.append((names.get(entry["testing_criteria"], entry["testing_criteria"]),
                     str(passed), str(failed), rate))
    counts = run["result_counts"]
    rows.append(("all criteria", str(counts["passed"]), str(counts["failed"]),
                 f"{counts['passed'] / counts['total']:.0%}" if counts["total"] else "-"))
    widths = [max(len(row[column]) for row in rows) for column in range(4)]
    lines = ["  ".join(cell.ljust(width) if column == 0 else cell.rjust(width)
                       for column, (cell, width) in enumerate(zip(row, widths, strict=True)))
             for row in rows]
    if counts["errored"]:
        lines.append(f"{counts['errored']} of {counts['total']} items errored "
                     "(no sample, or a grader could not score it)")
    return lines


def run_eval(client: OpenAI, eval_id: str, model: str, data: Path, *, prompt: str | None,
             item_reference: str | None, max_tokens: int,
             say: Callable[[str], None]) -> dict[str, Any]:
    """Upload ``data``, run the eval on ``model``, wait for its end, print the table; the run
    as the API answered it last."""
    evaluation = client.evals.retrieve(eval_id)
    names = {getattr(criterion, "id", ""): criterion.name
             for criterion in evaluation.testing_criteria}
    uploaded = client.files.create(file=data.open("rb"), purpose="evals")
    source: Any = {"type": "completions", "model": model,
                   "source": {"type": "file_id", "id": uploaded.id},
                   "input_messages": input_messages(prompt, item_reference),
                   "sampling_params": {"max_completion_tokens": max_tokens, "temperature": 0}}
    created = client.evals.runs.create(eval_id, name=model, data_source=source)
    say(f"run {created.id} of {eval_id} on {model}")
    run = client.evals.runs.retrieve(created.id, eval_id=eval_id)
    while run.status not in FINISHED:
        time.sleep(POLL_SECONDS)
        run = client.evals.runs.retrieve(created.id, eval_id=eval_id)
    answer = run.model_dump()
    say(f"{run.status}: {run.result_counts.total} items")
    if run.status == "failed":
        say(f"error: {run.error.code}: {run.error.message}")
    for line in criteria_table(answer, names):
        say(line)
    return answer
