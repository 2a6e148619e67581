"""Issue 28's proof: an eval tells a fine-tune from its base. Through the official SDK (loose
and strict), one eval with four criteria (``string_check``, ``text_similarity`` with ``bleu``
and with ``rouge_l``, a ``python`` grader) is run with a ``completions`` data source on the
embedded SmolLM2 and on the session's fine-tune of it (tests/finetuned.py), over the 24 made-up
countries asked in wordings no training line uses, so a pass comes from the facts it learned,
not from repeating trained strings. The fine-tune passes most items, the base almost none, and
both runs' output items are listed (page by page, and by status) and retrieved.

The thresholds tell a right capital from a wrong one, not only JSON from prose: the fine-tune
makes up the population (it did not learn the numbers), which costs a right answer about 0.08
BLEU (0.92) and 0.17 ROUGE-L (0.83); a wrong capital too gives 0.79 and 0.67; the base model's
sentences 0.01 and 0.1-0.25.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from openai import OpenAI

from tests.finetuned import Country, FineTune, countries, reworded
from tunegate.domain import catalog

pytestmark = [pytest.mark.e2e, pytest.mark.slow,
              # SDK 3.x warns on every evals call that OpenAI shut its Evals API down.
              pytest.mark.filterwarnings("ignore:The Evals API is deprecated:DeprecationWarning")]

BASE = catalog.EMBEDDED_MODEL_ID
ANSWER = {"input": "{{ sample.output_text }}", "reference": "{{ item.answer }}"}
PYTHON_SOURCE = """\
import json

def grade(sample, item):
    try:
        answer = json.loads(sample["output_text"])
    except ValueError:
        return 0.0
    return 1.0 if isinstance(answer, dict) and answer.get("capital") == item["capital"] else 0.0
"""
CRITERIA: list[Any] = [
    {"type": "string_check", "name": "names the capital", "input": "{{ sample.output_text }}",
     "reference": "{{ item.capital }}", "operation": "like"},
    {"type": "text_similarity", "name": "bleu", "evaluation_metric": "bleu",
     "pass_threshold": 0.85, **ANSWER},
    {"type": "text_similarity", "name": "rouge_l", "evaluation_metric": "rouge_l",
     "pass_threshold": 0.75, **ANSWER},
    {"type": "python", "name": "json with the capital", "source": PYTHON_SOURCE},
]
CONFIG: Any = {"type": "custom", "include_sample_schema": True, "item_schema": {
    "type": "object", "required": ["question", "capital", "answer"], "properties": {
        "question": {"type": "string"}, "capital": {"type": "string"},
        "answer": {"type": "string"}}}}


def item_of(index: int, country: Country) -> dict[str, Any]:
    return {"item": {"question": reworded(index, country), "capital": country.capital,
                     "answer": country.answer()}}


def completions_source(model: str) -> Any:
    return {"type": "completions", "model": model,
            "source": {"type": "file_content",
                       "content": [item_of(i, c) for i, c in enumerate(countries())]},
            "input_messages": {"type": "template", "template": [
                {"role": "user", "content": "{{ item.question }}"}]},
            "sampling_params": {"temperature": 0, "seed": 1, "max_completion_tokens": 48}}


def finished(client: OpenAI, eval_id: str, run_id: str, seconds: float = 600) -> Any:
    deadline = time.monotonic() + seconds
    while (run := client.evals.runs.retrieve(run_id, eval_id=eval_id)).status in (
            "queued", "in_progress"):
        assert time.monotonic() < deadline, f"run {run_id} still {run.status}"
        time.sleep(0.5)
    return run


@pytest.fixture(scope="module")
def strict(fine_tune: FineTune) -> Iterator[OpenAI]:
    with fine_tune.strict_client() as client:
        yield client


@pytest.fixture(scope="module")
def runs(fine_tune: FineTune, strict: OpenAI) -> dict[str, Any]:
    """The eval and its two finished runs (base first), created and read with the strict SDK."""
    evaluation = strict.evals.create(name="made-up capitals", data_source_config=CONFIG,
                                     testing_criteria=CRITERIA)
    created = {model: strict.evals.runs.create(evaluation.id, name=model,
                                               data_source=completions_source(model))
               for model in (BASE, fine_tune.model)}
    return {"eval": evaluation,
            **{model: finished(strict, evaluation.id, run.id) for model, run in created.items()}}


def passes_per_criterion(run: Any) -> dict[str, int]:
    return {result.testing_criteria: result.passed for result in run.per_testing_criteria_results}


def test_the_fine_tune_passes_most_items_and_the_base_almost_none(
        fine_tune: FineTune, runs: dict[str, Any]) -> None:
    total = len(countries())
    tuned, base = runs[fine_tune.model], runs[BASE]
    for run, model in ((tuned, fine_tune.model), (base, BASE)):
        assert run.status == "completed", run.error
        assert run.model == model
        assert (run.result_counts.total, run.result_counts.errored) == (total, 0)
        [usage] = run.per_model_usage
        assert usage.run_model_name == model and usage.invocation_count == total
        assert usage.completion_tokens > total * 5  # real counts: every answer has some words
        assert len(run.per_testing_criteria_results) == len(CRITERIA)
    tuned_passes, base_passes = passes_per_criterion(tuned), passes_per_criterion(base)
    # Most: 23 of 24 passed every criterion when measured; almost none: the base
    # passed none: it answers in sentences that no similarity threshold here lets pass.
    assert all(passed >= total * 2 // 3 for passed in tuned_passes.values()), tuned_passes
    assert all(passed <= 2 for passed in base_passes.values()), base_passes
    assert tuned.result_counts.passed >= total * 2 // 3 and base.result_counts.passed <= 1


def test_both_runs_output_items_are_listed_and_retrieved(
        fine_tune: FineTune, runs: dict[str, Any], strict: OpenAI) -> None:
    evaluation, total = runs["eval"], len(countries())
    assert {run.id for run in strict.evals.runs.list(evaluation.id)} == {
        runs[BASE].id, runs[fine_tune.model].id}
    for model in (BASE, fine_tune.model):
        run = runs[model]
        for client in (fine_tune.client, strict):
            items = list(client.evals.runs.output_items.list(run.id, eval_id=evaluation.id,
                                                             limit=5))  # pages: the cursor
            assert sorted(item.datasource_item_id for item in items) == list(range(total))
            passing = list(client.evals.runs.output_items.list(
                run.id, eval_id=evaluation.id, status="pass", limit=100))
            assert len(passing) == run.result_counts.passed
            assert all(item.status == "pass" for item in passing)
        first = strict.evals.runs.output_items.retrieve(items[0].id, eval_id=evaluation.id,
                                                       run_id=run.id)
        country = countries()[first.datasource_item_id]
        assert first.datasource_item == item_of(first.datasource_item_id, country)["item"]
        assert first.sample.model == model and first.sample.usage.completion_tokens > 0
        assert first.sample.input[-1].content == reworded(first.datasource_item_id, country)
        answer = first.sample.output[0].content or ""
        assert len(first.results) == len(CRITERIA)
        says_capital = next(result for result in first.results
                            if result.name.startswith("names the capital"))
        assert says_capital.passed == (country.capital in answer)
