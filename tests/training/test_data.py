"""Rendering and loss masks: only assistant tokens with weight 1 (and completions) are trained."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import TEST_DATA
from tunegate.chat.format import TemplateSupport, to_template_messages
from tunegate.training.data import (
    IGNORE,
    Example,
    file_role,
    iter_examples,
    load_dataset,
    template_support,
)
from tunegate.training.errors import TrainingFailed
from tunegate.training.messages import Note

from .conftest import TOOL_TEMPLATE, build_tokenizer, chat, write_jsonl


def trained_text(tokenizer: Any, example: Example) -> str:
    return tokenizer.decode([t for t, label in zip(example.input_ids, example.labels, strict=True)
                             if label != IGNORE])


def load(tmp_path: Path, tokenizer: Any, rows: list[dict[str, Any]], **kwargs: Any) -> Any:
    return load_dataset(write_jsonl(tmp_path / "data.jsonl", rows), tokenizer,
                        kwargs.pop("max_seq_len", 512), **kwargs)


def test_only_the_assistant_reply_and_its_end_token_are_trained(tmp_path: Path,
                                                                tiny_tokenizer: Any) -> None:
    dataset = load(tmp_path, tiny_tokenizer, [chat("What is 2 plus 2?", "Two plus two is four.")])
    example = dataset.examples[0]
    assert trained_text(tiny_tokenizer, example) == "Two plus two is four.<|im_end|>"
    # Labels are the input ids where trained (shifting happens in packing).
    assert all(label in (IGNORE, token)
               for token, label in zip(example.input_ids, example.labels, strict=True))
    full = tiny_tokenizer.decode(example.input_ids)
    assert full.startswith("<|im_start|>system\nYou are a helpful")  # the template's default
    assert example.line == 1


def test_weight_zero_messages_are_not_trained(tmp_path: Path, tiny_tokenizer: Any) -> None:
    row = {"messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Say one."},
        {"role": "assistant", "content": "one", "weight": 0},
        {"role": "user", "content": "Say two."},
        {"role": "assistant", "content": "two", "weight": 1},
        {"role": "user", "content": "Say three."},
        {"role": "assistant", "content": "three"},
    ]}
    example = load(tmp_path, tiny_tokenizer, [row]).examples[0]
    assert trained_text(tiny_tokenizer, example) == "two<|im_end|>three<|im_end|>"


def test_prompt_is_masked_and_completion_plus_eos_trained(tmp_path: Path,
                                                          tiny_tokenizer: Any) -> None:
    example = load(tmp_path, tiny_tokenizer,
                   [{"prompt": "The capital of France is", "completion": " Paris."}]).examples[0]
    assert trained_text(tiny_tokenizer, example) == " Paris.<|im_end|>"
    assert example.input_ids[-1] == tiny_tokenizer.eos_token_id


def test_a_completion_starts_with_the_bos_the_tokenizer_adds_to_plain_text(
        tmp_path: Path, tiny_tokenizer: Any) -> None:
    """As llama.cpp adds BOS to a /v1/completions prompt of a model that asks for one (Gemma),
    training puts it first too, masked; a tokenizer that adds none (SmolLM2's) is unchanged."""
    from tokenizers import processors

    from .conftest import build_tokenizer

    row = {"prompt": "The capital of France is", "completion": " Paris."}
    without = load(tmp_path, tiny_tokenizer, [row]).examples[0]
    with_bos = build_tokenizer()  # the session's tiny_tokenizer stays as it is
    bos = with_bos.convert_tokens_to_ids("<|im_start|>")
    with_bos.backend_tokenizer.post_processor = processors.Sequence([
        processors.ByteLevel(trim_offsets=False),
        processors.TemplateProcessing(single="<|im_start|> $A",
                                      special_tokens=[("<|im_start|>", bos)])])
    example = load(tmp_path, with_bos, [row]).examples[0]
    assert example.input_ids == [bos, *without.input_ids]
    assert trained_text(with_bos, example) == " Paris.<|im_end|>"


def test_an_example_with_nothing_to_train_fails_naming_its_line(tmp_path: Path,
                                                                tiny_tokenizer: Any) -> None:
    rows = [chat("a", "b"), chat("c", "d", weight=0)]
    with pytest.raises(TrainingFailed) as caught:
        load(tmp_path, tiny_tokenizer, rows)
    assert caught.value.code == "invalid_training_file"
    assert "Line 2" in caught.value.message
    with pytest.raises(TrainingFailed) as caught:
        load(tmp_path, tiny_tokenizer, [{"messages": [{"role": "user", "content": "x"}]}],
             validation=True)
    assert (caught.value.code, caught.value.param) == ("invalid_validation_file", "validation_file")


def test_bad_json_fails_naming_its_line(tmp_path: Path, tiny_tokenizer: Any) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(chat("a", "b")) + "\n{not json\n")
    with pytest.raises(TrainingFailed, match="Line 2"):
        load_dataset(path, tiny_tokenizer, 512)


@pytest.mark.model
def test_a_tokenizer_without_chat_template_fails_specifically(tmp_path: Path) -> None:
    with pytest.raises(TrainingFailed) as caught:
        load(tmp_path, build_tokenizer(chat_template=None), [chat("a", "b")])
    assert caught.value.code == "missing_chat_template"


def whole_lengths(path: Path, tokenizer: Any) -> list[int]:
    """Each example's length in tokens before truncation."""
    return [e.n_tokens for e in iter_examples(path, tokenizer, file_role(False))]


def test_long_examples_are_cut_from_the_end_with_one_warning(tmp_path: Path,
                                                             tiny_tokenizer: Any) -> None:
    events: list[Note] = []
    long_prompt = "word " * 200
    rows = [chat("short", "fine"), chat("x", "answer " * 100), chat(long_prompt, "lost")]
    dataset = load(tmp_path, tiny_tokenizer, rows, max_seq_len=64, emit=events.append)
    assert [e.n_tokens <= 64 for e in dataset.examples] == [True, True]
    assert (dataset.n_truncated, dataset.n_dropped) == (2, 1)
    lengths = whole_lengths(tmp_path / "data.jsonl", tiny_tokenizer)
    assert lengths[0] <= 64 < lengths[1] < lengths[2]
    assert [e.level for e in events] == ["warn"]
    assert events[0].message == (
        "2 of 3 example(s) in the training file were longer than the maximum sequence length of "
        "64 tokens (setting TUNEGATE_MAX_SEQ_LEN) and were truncated from the end; 1 of them "
        f"had no token to train on left and was skipped. The longest is line 3 ({lengths[2]} "
        "tokens).")


@pytest.mark.parametrize("validation", [False, True])
def test_a_file_with_no_example_within_the_limit_fails_naming_the_limit_and_the_longest(
        tmp_path: Path, tiny_tokenizer: Any, validation: bool) -> None:
    rows = [chat("word " * 100, "lost"), chat("word " * 300, "lost"), chat("word " * 200, "x")]
    events: list[Note] = []
    with pytest.raises(TrainingFailed) as caught:
        load(tmp_path, tiny_tokenizer, rows, max_seq_len=64, validation=validation,
             emit=events.append)
    longest = whole_lengths(tmp_path / "data.jsonl", tiny_tokenizer)[1]
    kind = "validation" if validation else "training"
    assert (caught.value.code, caught.value.param) == (f"invalid_{kind}_file", f"{kind}_file")
    assert caught.value.message == (
        f"No example of the {kind} file fits the maximum sequence length of 64 tokens (setting "
        "TUNEGATE_MAX_SEQ_LEN): all 3 are longer, and none has a token to train on within its "
        f"first 64. The longest is line 2 ({longest} tokens). Shorten the examples or raise "
        "TUNEGATE_MAX_SEQ_LEN.")
    assert events == []  # the failure says it all
    # One example within the limit is enough: the file trains, with a warning.
    dataset = load(tmp_path, tiny_tokenizer, [*rows, chat("short", "fine")], max_seq_len=64,
                   validation=validation, emit=events.append)
    assert (len(dataset.examples), dataset.n_dropped) == (1, 3)
    assert "3 of 4 example(s)" in events[0].message
    assert f"line 2 ({longest} tokens)" in events[0].message


def test_tools_fall_back_to_hermes_text_when_the_template_ignores_them(
        tmp_path: Path, tiny_tokenizer: Any) -> None:
    assert template_support(tiny_tokenizer) == TemplateSupport(tools=False, tool_calls=False)
    row = json.loads((TEST_DATA / "openai-cookbook__drone_training.jsonl").read_text()
                     .splitlines()[0])
    example = load(tmp_path, tiny_tokenizer, [row], max_seq_len=8192).examples[0]
    full = tiny_tokenizer.decode(example.input_ids)
    assert "<tools>\n{\"type\": \"function\", \"function\": {\"name\": \"takeoff_drone\"" in full
    assert trained_text(tiny_tokenizer, example) == (
        '<tool_call>\n{"name": "takeoff_drone", "arguments": {"altitude": 100}}\n</tool_call>'
        "<|im_end|>")


def test_double_encoded_arguments_are_decoded_to_an_object() -> None:
    row = {"messages": [{"role": "user", "content": "land"}, {"role": "assistant", "tool_calls": [
        {"id": "c", "type": "function",
         "function": {"name": "land_drone", "arguments": "\"{\\\"location\\\": \\\"current\\\"}\""}}]}]}
    prepared = to_template_messages(row, TemplateSupport(tools=False, tool_calls=False))
    assert prepared.messages[1]["content"] == (
        '<tool_call>\n{"name": "land_drone", "arguments": {"location": "current"}}\n</tool_call>')


@pytest.mark.model
def test_templates_with_tool_support_render_tools_themselves(tmp_path: Path) -> None:
    tokenizer = build_tokenizer(chat_template=TOOL_TEMPLATE)
    assert template_support(tokenizer) == TemplateSupport(tools=True, tool_calls=True)
    row = {"tools": [{"type": "function", "function": {"name": "land", "parameters": {}}}],
           "messages": [{"role": "user", "content": "land"},
                        {"role": "assistant", "content": "", "tool_calls": [
                            {"id": "c", "type": "function",
                             "function": {"name": "land", "arguments": "{\"where\": \"home\"}"}}]},
                        {"role": "tool", "tool_call_id": "c", "content": "ok"},
                        {"role": "assistant", "content": "Landed."}]}
    example = load(tmp_path, tokenizer, [row]).examples[0]
    assert tokenizer.decode(example.input_ids).startswith("<|im_start|>system\nTOOLS:land;")
    assert trained_text(tokenizer, example) == (
        '<call>land{"where": "home"}</call><|im_end|>Landed.<|im_end|>')
