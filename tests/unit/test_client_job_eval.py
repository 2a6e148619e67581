"""``tunegate eval --job``'s pieces that need no server: how each format of training example
becomes an eval item (the dashboard's validation.js reads them the same way; the browser test
checks it on the same file), the default criterion and the side-by-side table."""

from __future__ import annotations

import json

from tunegate.client.job_eval import comparison_table, default_criterion, validation_items

CHAT = {"messages": [{"role": "system", "content": "Be brief."},
                     {"role": "user", "content": "Capital of France?"},
                     {"role": "assistant", "content": "Paris."}]}


def lines(*rows: object) -> list[str]:
    return [json.dumps(row) for row in rows]


def test_a_chat_example_is_its_prompt_and_its_last_answer() -> None:
    assert validation_items(lines(CHAT)) == [{
        "messages": [{"role": "system", "content": "Be brief."},
                     {"role": "user", "content": "Capital of France?"}],
        "answer": "Paris."}]


def test_content_parts_become_text() -> None:
    parts = {"messages": [
        {"role": "user", "content": [{"type": "text", "text": "Capital "},
                                     {"type": "text", "text": "of Italy?"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "Rome."}]}]}
    assert validation_items(lines(parts)) == [{
        "messages": [{"role": "user", "content": "Capital of Italy?"}], "answer": "Rome."}]


def test_prompt_completion_and_preference_examples() -> None:
    pair = {"prompt": "2+2=", "completion": "4"}
    preference = {"input": {"messages": [{"role": "user", "content": "Hi"}]},
                  "preferred_output": [{"role": "assistant", "content": "Hello!"}],
                  "non_preferred_output": [{"role": "assistant", "content": "Go away."}]}
    assert validation_items(lines(pair, preference)) == [
        {"messages": [{"role": "user", "content": "2+2="}], "answer": "4"},
        {"messages": [{"role": "user", "content": "Hi"}], "answer": "Hello!"}]


def test_examples_without_an_answer_to_compare_are_skipped() -> None:
    ends_with_user = {"messages": [{"role": "user", "content": "Hi"}]}
    only_answer = {"messages": [{"role": "assistant", "content": "Hi"}]}
    tool_call = {"messages": [{"role": "user", "content": "Weather?"},
                              {"role": "assistant", "content": None, "tool_calls": []}]}
    assert validation_items([*lines(ends_with_user, only_answer, tool_call, [1], {}), "",
                             *lines(CHAT)]) == validation_items(lines(CHAT))


def test_the_default_criterion_compares_with_the_answer() -> None:
    assert default_criterion() == {
        "type": "text_similarity", "name": "rouge_l against the validation answer",
        "input": "{{ sample.output_text }}", "reference": "{{ item.answer }}",
        "evaluation_metric": "rouge_l", "pass_threshold": 0.6}
    assert default_criterion("bleu", 0.3)["evaluation_metric"] == "bleu"


def test_the_table_shows_each_run_and_who_passed_more() -> None:
    def run(model: str, passed: int) -> dict[str, object]:
        return {"model": model, "status": "completed",
                "per_testing_criteria_results": [
                    {"testing_criteria": "c-1", "passed": passed, "failed": 4 - passed}],
                "result_counts": {"total": 4, "passed": passed, "failed": 4 - passed,
                                  "errored": 0}}

    table = comparison_table([run("ft:x", 3), run("base", 1)], {"c-1": "similar"},
                             ["fine-tuned", "base"])
    assert table[0] == "fine-tuned: ft:x (completed)"
    assert table[2].split() == ["similar", "3", "1", "75%"]
    assert table[4] == "base: base (completed)"
    assert table[-1] == "items passed: fine-tuned 3/4, base 1/4"
