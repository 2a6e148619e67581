"""``tunegate eval``'s pieces that need no server: the input messages it sends and the
per-criterion table it prints (the command itself runs against a real server in
tests/e2e/test_evals_sdk.py)."""

from __future__ import annotations

from tunegate.client.evaluate import criteria_table, input_messages


def test_a_prompt_is_a_template_and_a_reference_is_passed_as_is() -> None:
    assert input_messages("Q: {{ item.q }}", None) == {
        "type": "template", "template": [{"role": "user", "content": "Q: {{ item.q }}"}]}
    assert input_messages(None, None)["template"][0]["content"] == "{{ item.input }}"
    assert input_messages("ignored", "item.messages") == {
        "type": "item_reference", "item_reference": "item.messages"}


def test_the_table_names_criteria_and_rates() -> None:
    run = {"per_testing_criteria_results": [
               {"testing_criteria": "exact-1", "passed": 3, "failed": 1},
               {"testing_criteria": "unknown-2", "passed": 0, "failed": 0}],
           "result_counts": {"total": 5, "passed": 2, "failed": 2, "errored": 1}}
    lines = criteria_table(run, {"exact-1": "exact"})
    assert lines[0].split() == ["criterion", "passed", "failed", "pass", "rate"]
    assert lines[1].split() == ["exact", "3", "1", "75%"]
    assert lines[2].split() == ["unknown-2", "0", "0", "-"]
    assert lines[3].split() == ["all", "criteria", "2", "2", "40%"]
    assert lines[4] == "1 of 5 items errored (no sample, or a grader could not score it)"
    assert len({len(line) for line in lines[:4]}) == 1  # columns aligned
