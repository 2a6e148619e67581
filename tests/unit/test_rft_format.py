"""OpenAI's reinforcement fine-tuning line (``tunegate.domain.rft_format``): what the file check
and the trainer's reader both accept, and the line-numbered errors for what they do not."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tunegate.domain.datasets import RFT, DatasetError, validate_dataset
from tunegate.domain.rft_format import rft_example

PROMPT = [{"role": "developer", "content": "Answer with a number."},
          {"role": "user", "content": "What is 2 + 3?"}]
TOOL = {"type": "function", "function": {"name": "add", "parameters": {"type": "object"}}}


def write(tmp_path: Path, *rows: Any) -> Path:
    path = tmp_path / "rft.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def test_every_key_but_messages_and_tools_is_the_graders_item() -> None:
    example = rft_example({"messages": PROMPT, "tools": [TOOL], "reference_answer": {"sum": 5},
                           "tags": ["math"]}, 1)
    assert example.messages == PROMPT
    assert example.tools == [TOOL]
    assert example.item == {"reference_answer": {"sum": 5}, "tags": ["math"]}


def test_a_line_without_tools_or_item_is_still_a_prompt() -> None:
    example = rft_example({"messages": [{"role": "user", "content": "Hi"}]}, 1)
    assert (example.tools, example.item) == (None, {})


def test_earlier_turns_and_tool_results_may_precede_the_last_user_message() -> None:
    messages = [{"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Add 2 and 3."},
                {"role": "assistant", "tool_calls": [{"id": "c1", "type": "function",
                                                      "function": {"name": "add",
                                                                   "arguments": "{}"}}]},
                {"role": "tool", "tool_call_id": "c1", "content": "5"},
                {"role": "assistant", "content": "5"},
                {"role": "user", "content": "And 4 and 4?"}]
    assert rft_example({"messages": messages, "tools": [TOOL]}, 1).messages == messages


@pytest.mark.parametrize(("line", "fragment"), [
    ({"prompt": "2+3?", "answer": "5"},
     "needs 'messages', the prompt the model answers; found only 'answer', 'prompt'"),
    ({}, "found only an empty object"),
    ({"messages": []}, "'messages' must be a non-empty list"),
    ({"messages": [{"role": "user", "content": "2+3?"},
                   {"role": "assistant", "content": "5"}]},
     "the last message must be the user's, the prompt the model answers; it is 'assistant'"),
    ({"messages": [{"role": "function", "name": "f", "content": "x"},
                   {"role": "user", "content": "x"}]}, "unrecognized role 'function'"),
    ({"messages": [{"role": "user", "content": ""}]}, "'content' must be non-empty text"),
    ({"messages": PROMPT, "tools": {"add": TOOL}}, "'tools' must be a list of tools"),
    ({"messages": PROMPT, "tools": [{"type": "function", "function": {}}]},
     "tool 0: a tool must be"),
])
def test_faults_name_the_line(line: dict[str, Any], fragment: str) -> None:
    with pytest.raises(DatasetError) as raised:
        rft_example(line, 7)
    assert raised.value.line == 7
    assert raised.value.message.startswith("Line 7")
    assert fragment in raised.value.message


def test_validating_a_file_for_reinforcement_reads_every_line(tmp_path: Path) -> None:
    good = {"messages": PROMPT, "reference_answer": "5"}
    report = validate_dataset(write(tmp_path, *[good] * 12), "reinforcement", min_examples=10)
    assert (report.n_examples, report.format) == (12, RFT)


def test_a_supervised_chat_file_is_refused_for_reinforcement_at_its_first_line(
        tmp_path: Path) -> None:
    chat = {"messages": [*PROMPT, {"role": "assistant", "content": "5"}]}
    good = {"messages": PROMPT, "reference_answer": "5"}
    with pytest.raises(DatasetError) as raised:
        validate_dataset(write(tmp_path, good, good, chat), "reinforcement")
    assert raised.value.line == 3
    assert "Line 3: the last message must be the user's" in raised.value.message


def test_a_reinforcement_file_is_not_a_supervised_one(tmp_path: Path) -> None:
    good = {"messages": PROMPT, "reference_answer": "5"}
    with pytest.raises(DatasetError, match="Line 1: the example has no assistant message"):
        validate_dataset(write(tmp_path, good), "supervised")
