"""Training data files: JSONL reading and line-by-line format validation.

Torch-free on purpose: the API checks uploads with it and the worker validates jobs with it
before any model is loaded. Rendering and masking for training live in ``tunegate.training``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunegate.domain.chat_examples import DatasetError, check_messages, text_content
from tunegate.domain.jsonl_text import LineTooLong, UnreadableLine, parse_line, text_lines
from tunegate.domain.rft_format import RFT, rft_example

__all__ = ["CHAT", "MIN_TRAINING_EXAMPLES", "PREFERENCE", "PROMPT_COMPLETION", "RFT",
           "DatasetError", "FileReport", "check_example", "check_jsonl_upload", "detect_format",
           "iter_jsonl", "validate_dataset"]

MIN_TRAINING_EXAMPLES = 10
# A line longer than this is refused rather than read whole into memory.
MAX_LINE_BYTES = 64 * 1024 * 1024

CHAT = "chat"
PROMPT_COMPLETION = "prompt/completion"
PREFERENCE = "preference"

# Which example formats each fine-tuning method trains on.
FORMATS_FOR_METHOD = {
    "supervised": (CHAT, PROMPT_COMPLETION),
    "dpo": (PREFERENCE,),
    "reinforcement": (RFT,),
}

# The two sides of a preference example; the older spec (Dec 2024 - Apr 2025) named them
# ``preferred_completion`` / ``non_preferred_completion``, and files written then still exist.
PREFERENCE_SIDES = {"preferred_output": "preferred_completion",
                    "non_preferred_output": "non_preferred_completion"}


def iter_jsonl(path: Path, max_line_bytes: int = MAX_LINE_BYTES,
               ) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line_number, object)`` for each non-blank line; raise on anything but objects,
    on text that is not UTF-8 (nor UTF-16 with a byte order mark), and on a line longer than
    ``max_line_bytes`` (not counting its newline)."""
    try:
        for line_number, text in text_lines(path, max_line_bytes):
            if text.strip():
                yield line_number, _object(text, line_number)
    except LineTooLong as exc:
        raise DatasetError(
            f"Line {exc.line} is longer than {max_line_bytes} bytes (setting "
            "TUNEGATE_MAX_LINE_BYTES).", line=exc.line,
        ) from None
    except UnreadableLine as exc:
        raise DatasetError(exc.message, line=exc.line) from None


def _object(text: str, line_number: int) -> dict[str, Any]:
    try:
        value = parse_line(text, line_number)
    except RecursionError:  # json recurses per level and gives up near 1,000
        raise DatasetError(
            f"Line {line_number} nests arrays and objects too deeply to be read.",
            line=line_number,
        ) from None
    if not isinstance(value, dict):
        raise DatasetError(
            f"Line {line_number} is a JSON {type(value).__name__}, not an object. "
            "Expected JSONL: one JSON object per line.",
            line=line_number,
        )
    return value


def check_jsonl_upload(path: Path, *, max_line_bytes: int = MAX_LINE_BYTES,
                       max_examples: int | None = None) -> int:
    """Check an upload with purpose ``fine-tune`` is JSONL of objects, within the line length
    and example count limits; return the example count."""
    count = 0
    for line_number, _ in iter_jsonl(path, max_line_bytes):
        count += 1
        if max_examples is not None and count > max_examples:
            raise DatasetError(
                f"Line {line_number}: the file has more than {max_examples} examples, the most "
                "one file may hold (setting TUNEGATE_MAX_EXAMPLES).", line=line_number)
    if count == 0:
        raise DatasetError("The file is empty: expected JSONL with one JSON object per line.")
    return count


def detect_format(example: dict[str, Any]) -> str | None:
    if "messages" in example:
        return CHAT
    if any(key in example for side in PREFERENCE_SIDES.items() for key in side):
        return PREFERENCE
    if "prompt" in example and "completion" in example:
        return PROMPT_COMPLETION
    return None


def _check_prompt_completion(example: dict[str, Any], line: int) -> None:
    for key in ("prompt", "completion"):
        if not isinstance(example.get(key), str):
            raise DatasetError(f"Line {line}: '{key}' must be a string.", line=line)
    if not example["completion"].strip():
        raise DatasetError(f"Line {line}: 'completion' must be non-empty.", line=line)


def _check_preference(example: dict[str, Any], line: int) -> None:
    prompt = example.get("input")
    if not isinstance(prompt, dict):
        raise DatasetError(f"Line {line}: 'input' must be an object with 'messages'.", line=line)
    check_messages(prompt.get("messages"), line, need_assistant=False)
    for key, legacy in PREFERENCE_SIDES.items():
        side = example.get(key, example.get(legacy))
        if side is None:
            raise DatasetError(f"Line {line}: '{key}' is missing; a preference example needs "
                               "both 'preferred_output' and 'non_preferred_output'.", line=line)
        if not isinstance(side, list) or len(side) != 1:
            raise DatasetError(
                f"Line {line}: '{key}' must be a list with exactly one assistant message.", line=line
            )
        if not isinstance(side[0], dict) or side[0].get("role") != "assistant":
            raise DatasetError(f"Line {line}: '{key}' must hold an assistant message.", line=line)
        # DPO compares answer texts; tunegate trains text-only preferences, as OpenAI does.
        if not text_content(side[0].get("content")):
            raise DatasetError(f"Line {line}: '{key}' content must be non-empty text.", line=line)


def check_example(example: dict[str, Any], line: int, method_type: str) -> str:
    """Validate one example for ``method_type``; return its format name."""
    if FORMATS_FOR_METHOD[method_type] == (RFT,):  # the rule the trainer's reader shares
        rft_example(example, line)
        return RFT
    found = detect_format(example)
    expected = FORMATS_FOR_METHOD[method_type]
    if found is None:
        raise DatasetError(
            f"Line {line}: unexpected example format; expected "
            f"{' or '.join(expected)} examples for {method_type} fine-tuning.",
            line=line,
        )
    if found not in expected:
        raise DatasetError(
            f"Line {line}: found a {found} example, but {method_type} fine-tuning expects "
            f"{' or '.join(expected)} examples.",
            line=line,
        )
    if found == CHAT:
        check_messages(example["messages"], line, need_assistant=True)
    elif found == PROMPT_COMPLETION:
        _check_prompt_completion(example, line)
    else:
        _check_preference(example, line)
    return found


@dataclass(frozen=True)
class FileReport:
    n_examples: int
    format: str


def validate_dataset(path: Path, method_type: str, *, min_examples: int = 1,
                     max_line_bytes: int = MAX_LINE_BYTES) -> FileReport:
    """Check every line of a training or validation file; raise ``DatasetError`` on the first fault."""
    formats: set[str] = set()
    count = 0
    for line, example in iter_jsonl(path, max_line_bytes):
        formats.add(check_example(example, line, method_type))
        count += 1
        if len(formats) > 1:
            raise DatasetError(
                f"Line {line}: the file mixes {' and '.join(sorted(formats))} examples; "
                "use one format per file.",
                line=line,
            )
    if count < min_examples:
        raise DatasetError(
            f"Training file has {count} example(s), but must have at least {min_examples} examples",
            code="invalid_n_examples",
        )
    return FileReport(n_examples=count, format=formats.pop())
