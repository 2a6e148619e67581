import json
from pathlib import Path

import pytest

from tests.conftest import TEST_DATA, chat_lines
from tunegate.domain.datasets import (
    MIN_TRAINING_EXAMPLES,
    DatasetError,
    check_jsonl_upload,
    validate_dataset,
)
from tunegate.training.data import read_rows
from tunegate.training.errors import TrainingFailed


def write(tmp_path: Path, content: bytes) -> Path:
    path = tmp_path / "data.jsonl"
    path.write_bytes(content)
    return path


def lines(*rows: object) -> bytes:
    return "".join(json.dumps(row) + "\n" for row in rows).encode()


def test_valid_chat_file(tmp_path: Path) -> None:
    report = validate_dataset(write(tmp_path, chat_lines(12)), "supervised",
                              min_examples=MIN_TRAINING_EXAMPLES)
    assert (report.n_examples, report.format) == (12, "chat")


@pytest.mark.parametrize("name", [
    "microsoft-foundry__Text-GSM8K__chat_train.jsonl",
    "openai-cookbook__drone_training.jsonl",
])
def test_real_public_files_validate(name: str) -> None:
    report = validate_dataset(TEST_DATA / name, "supervised", min_examples=10)
    assert report.n_examples >= 10


def test_real_preference_file_validates_for_dpo_only() -> None:
    path = TEST_DATA / "microsoft-foundry__orca_dpo_pairs__validation.jsonl"
    assert validate_dataset(path, "dpo").format == "preference"
    with pytest.raises(DatasetError, match="Line 1: found a preference example"):
        validate_dataset(path, "supervised")


def test_the_cookbooks_toy_file_has_too_few_examples() -> None:
    with pytest.raises(DatasetError) as raised:
        validate_dataset(TEST_DATA / "openai-cookbook__toy_chat_fine_tuning.jsonl",
                         "supervised", min_examples=MIN_TRAINING_EXAMPLES)
    assert raised.value.code == "invalid_n_examples"
    assert "has 5 example(s), but must have at least 10" in raised.value.message


@pytest.mark.parametrize(("bad", "fragment"), [
    ({"messages": []}, "non-empty list"),
    ({"messages": [{"role": "wizard", "content": "x"}]}, "unrecognized role"),
    ({"messages": [{"role": "user", "content": "x"}]}, "no assistant message"),
    ({"messages": [{"role": "user", "content": "x"},
                   {"role": "assistant", "content": ""}]}, "non-empty 'content'"),
    ({"messages": [{"role": "user", "content": "x"},
                   {"role": "assistant", "content": "y", "weight": 2}]}, "'weight' must be 0 or 1"),
    ({"text": "no format"}, "unexpected example format"),
    ({"prompt": "p", "completion": 5}, "'completion' must be a string"),
])
def test_malformed_examples_name_their_line(tmp_path: Path, bad: dict, fragment: str) -> None:
    content = chat_lines(3) + lines(bad) + chat_lines(8)
    with pytest.raises(DatasetError) as raised:
        validate_dataset(write(tmp_path, content), "supervised")
    assert raised.value.line == 4
    assert "Line 4" in raised.value.message and fragment in raised.value.message


def test_tool_calls_and_prompt_completion_are_accepted(tmp_path: Path) -> None:
    tool_example = {"messages": [
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "tool_calls": [{"id": "c1", "type": "function", "function": {
            "name": "weather", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
        {"role": "assistant", "content": "Sunny."}]}
    assert validate_dataset(write(tmp_path, lines(tool_example)), "supervised").n_examples == 1
    legacy = lines(*({"prompt": f"{i}?", "completion": f"{i}!"} for i in range(3)))
    assert validate_dataset(write(tmp_path, legacy), "supervised").format == "prompt/completion"


def test_mixed_formats_are_refused(tmp_path: Path) -> None:
    content = chat_lines(2) + lines({"prompt": "p", "completion": "c"})
    with pytest.raises(DatasetError, match="Line 3: the file mixes"):
        validate_dataset(write(tmp_path, content), "supervised")


def test_upload_check(tmp_path: Path) -> None:
    assert check_jsonl_upload(write(tmp_path, chat_lines(2) + b"\n")) == 2
    with pytest.raises(DatasetError, match="empty"):
        check_jsonl_upload(write(tmp_path, b""))
    with pytest.raises(DatasetError, match="Line 2 is not valid JSON"):
        check_jsonl_upload(write(tmp_path, b'{"a": 1}\n{oops\n'))
    with pytest.raises(DatasetError, match="Line 1 is a JSON list"):
        check_jsonl_upload(write(tmp_path, b"[1, 2]\n"))
    with pytest.raises(DatasetError, match="Line 1 is not valid JSON"):
        check_jsonl_upload(write(tmp_path, b"\xff\xfe\x00garbage"))


def test_shipped_fixtures() -> None:
    fixtures = Path(__file__).resolve().parents[1] / "fixtures"
    report = validate_dataset(fixtures / "tool_calls.jsonl", "supervised",
                              min_examples=MIN_TRAINING_EXAMPLES)
    assert (report.n_examples, report.format) == (10, "chat")
    with pytest.raises(DatasetError) as raised:
        validate_dataset(fixtures / "broken_line_7.jsonl", "supervised")
    assert raised.value.line == 7 and "Line 7 is not valid JSON" in raised.value.message


def preference(chosen: object = None, rejected: object = None, **extra: object) -> dict:
    row: dict = {"input": {"messages": [{"role": "user", "content": "Say hi."}]},
                 "preferred_output": [{"role": "assistant", "content": "Hi!"}],
                 "non_preferred_output": [{"role": "assistant", "content": "No."}]}
    if chosen is not None:
        row["preferred_output"] = chosen
    if rejected is not None:
        row["non_preferred_output"] = rejected
    return row | extra


def test_preference_file_without_a_trailing_newline_and_with_old_key_names(
        tmp_path: Path) -> None:
    old = {"input": {"messages": [{"role": "user", "content": "Say hi."}]},
           "preferred_completion": [{"role": "assistant", "content": "Hi!"}],
           "non_preferred_completion": [{"role": "assistant", "content": "No."}]}
    content = lines(*[preference()] * 10, old).rstrip(b"\n")
    report = validate_dataset(write(tmp_path, content), "dpo", min_examples=MIN_TRAINING_EXAMPLES)
    assert (report.n_examples, report.format) == (11, "preference")


def test_format_mix_ups_say_what_was_found_and_what_was_expected(tmp_path: Path) -> None:
    with pytest.raises(DatasetError) as raised:
        validate_dataset(write(tmp_path, chat_lines(3)), "dpo")
    assert raised.value.code == "invalid_training_file" and raised.value.line == 1
    assert raised.value.message == ("Line 1: found a chat example, but dpo fine-tuning expects "
                                    "preference examples.")
    with pytest.raises(DatasetError) as raised:
        validate_dataset(write(tmp_path, lines(preference())), "supervised")
    assert raised.value.message == ("Line 1: found a preference example, but supervised "
                                    "fine-tuning expects chat or prompt/completion examples.")


ASSISTANT = {"role": "assistant", "content": "Hello."}


@pytest.mark.parametrize(("bad", "fragment"), [
    (preference(chosen=[ASSISTANT, ASSISTANT]), "'preferred_output' must be a list with exactly one"),
    (preference(rejected=[]), "'non_preferred_output' must be a list with exactly one"),
    (preference(chosen=ASSISTANT), "'preferred_output' must be a list"),
    (preference(chosen=[{"role": "user", "content": "x"}]), "must hold an assistant message"),
    (preference(rejected=[{"role": "assistant", "content": "  "}]), "content must be non-empty"),
    ({k: v for k, v in preference().items() if k != "non_preferred_output"},
     "'non_preferred_output' is missing"),
    (preference(input={"messages": []}), "non-empty list"),
    (preference(input={"messages": [{"role": "wizard", "content": "x"}]}), "unrecognized role"),
    (preference(input="Say hi."), "'input' must be an object"),
])
def test_malformed_preference_lines_name_their_line(tmp_path: Path, bad: dict,
                                                    fragment: str) -> None:
    content = lines(*[preference()] * 4, bad, *[preference()] * 6)
    with pytest.raises(DatasetError) as raised:
        validate_dataset(write(tmp_path, content), "dpo")
    assert raised.value.line == 5
    assert raised.value.message.startswith("Line 5") and fragment in raised.value.message


# ------------------------------------------------------------- encodings (Windows tools)

WINDOWS_ENCODINGS = [("utf-16", b""), ("utf-16-le", b"\xff\xfe"), ("utf-16-be", b"\xfe\xff"),
                     ("utf-8", b"\xef\xbb\xbf")]


@pytest.mark.parametrize(("encoding", "bom"), WINDOWS_ENCODINGS)
def test_a_file_with_a_byte_order_mark_is_read_in_its_encoding(
        tmp_path: Path, encoding: str, bom: bytes) -> None:
    """Notepad and PowerShell's ``Out-File`` save UTF-16 with a BOM; others UTF-8 with one."""
    text = chat_lines(12).decode().replace("\n", "\r\n") + '{"messages": [{"role": "user", ' \
        '"content": "café ☕"}, {"role": "assistant", "content": "ok"}]}\r\n'
    path = write(tmp_path, bom + text.encode(encoding))
    assert check_jsonl_upload(path) == 13
    assert validate_dataset(path, "supervised").n_examples == 13
    rows = list(read_rows(path, "invalid_training_file", "training_file"))
    assert len(rows) == 13 and rows[-1][1]["messages"][0]["content"] == "café ☕"


def refusal(path: Path) -> DatasetError:
    with pytest.raises(DatasetError) as raised:
        check_jsonl_upload(path)
    return raised.value


def test_a_latin_1_file_is_refused_with_advice_and_its_line(tmp_path: Path) -> None:
    content = chat_lines(2) + '{"prompt": "café", "completion": "x"}\n'.encode("latin-1")
    error = refusal(write(tmp_path, content))
    assert error.line == 3
    assert error.message.startswith("Line 3 is not UTF-8 text")
    assert "save it as UTF-8" in error.message
    assert "codec" not in error.message and "position" not in error.message
    with pytest.raises(TrainingFailed) as failed:
        list(read_rows(write(tmp_path, content), "invalid_training_file", "training_file"))
    assert failed.value.message == error.message


def test_utf_16_without_a_byte_order_mark_is_refused_with_advice(tmp_path: Path) -> None:
    error = refusal(write(tmp_path, chat_lines(2).decode().encode("utf-16-le")))
    assert error.line == 1 and "save it as UTF-8" in error.message


def test_an_undecodable_utf_16_line_is_named(tmp_path: Path) -> None:
    broken = b"\xff\xfe" + chat_lines(2).decode().encode("utf-16-le") + b"\x00\xd8a\x00\n\x00"
    error = refusal(write(tmp_path, broken))
    assert error.line == 3 and "not UTF-16 text" in error.message, error.message


def test_a_json_error_names_the_file_line_and_the_character(tmp_path: Path) -> None:
    """json's own "line 1 column 15" beside "Line 2" reads as a contradiction."""
    error = refusal(write(tmp_path, b'{"a": 1}\n{"a": 1, oops}\n'))
    assert error.message.startswith("Line 2 is not valid JSON: Expecting property name "
                                    "enclosed in double quotes (at character 10)."), error.message
    assert "column" not in error.message and "line 1" not in error.message
