"""Preference (DPO) files to token ids: each line becomes a chosen and a rejected sequence.

A line is OpenAI's preference example, ``{"input": {"messages": [...], "tools": [...]},
"preferred_output": [assistant message], "non_preferred_output": [assistant message]}`` (or
the older ``preferred_completion`` / ``non_preferred_completion`` keys). Each side is rendered
as one conversation, ``input.messages`` followed by that side's answer, with the base's chat
template (:func:`tunegate.training.data.encode_chat`), so a pair tokenizes exactly as the same
conversation would for supervised training. Only the answer is trained (its content and the
end-of-turn token); assistant turns inside ``input`` are context, never trained. The two sides
share the prompt's tokens, which the packer computes once (:mod:`tunegate.training.packing`).

Truncation follows the supervised rule (cut from the end at ``max_seq_len``), side by side; a
pair where either side has no answer token left is dropped, since it has nothing to compare. The
warning and the failure name the longest pair by its longer side.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunegate.chat.format import ChatFormatError, TemplateSupport
from tunegate.domain.datasets import PREFERENCE_SIDES
from tunegate.training.data import (
    ChatTokenizer,
    Dataset,
    Emit,
    Example,
    FileRole,
    LengthTally,
    encode_chat,
    file_role,
    load_fitting,
    read_rows,
    template_support,
    truncated,
)
from tunegate.training.errors import TrainingFailed


@dataclass(frozen=True)
class PreferencePair:
    """One line: the chosen and rejected sequences, and (once computed) the reference model's
    summed log-probabilities of their answers, ``(chosen, rejected)``."""

    chosen: Example
    rejected: Example
    line: int
    reference: tuple[float, float] | None = None

    @property
    def n_tokens(self) -> int:
        return self.chosen.n_tokens + self.rejected.n_tokens


def side_messages(row: dict[str, Any], side: str) -> dict[str, Any]:
    """The chat example of one side: the input conversation, then that side's answer."""
    prompt = row.get("input")
    if not isinstance(prompt, dict) or not isinstance(prompt.get("messages"), list):
        raise ChatFormatError("'input' must be an object with a 'messages' list")
    answer = row.get(side, row.get(PREFERENCE_SIDES[side]))
    if not isinstance(answer, list) or len(answer) != 1 or not isinstance(answer[0], dict) \
            or answer[0].get("role") != "assistant":
        raise ChatFormatError(f"'{side}' must be a list with exactly one assistant message")
    context = [{**m, "weight": 0} if isinstance(m, dict) and m.get("role") == "assistant" else m
               for m in prompt["messages"]]
    example: dict[str, Any] = {"messages": [*context, {**answer[0], "weight": 1}]}
    if prompt.get("tools"):
        example["tools"] = prompt["tools"]
    return example


def encode_pair(row: dict[str, Any], tokenizer: ChatTokenizer,
                support: TemplateSupport, line: int) -> PreferencePair:
    """Tokenize both sides of one preference line (answers trained, prompts masked)."""
    chosen, rejected = (Example(*encode_chat(side_messages(row, side), tokenizer, support), line)
                        for side in PREFERENCE_SIDES)
    return PreferencePair(chosen, rejected, line)


def load_preferences(path: str | Path, tokenizer: ChatTokenizer, max_seq_len: int, *,
                     validation: bool = False, emit: Emit | None = None,
                     ) -> Dataset[PreferencePair]:
    """Tokenize every line of a preference file.

    Raises ``TrainingFailed`` (invalid_training_file / invalid_validation_file, naming the line)
    for a line that is not a preference example or cannot be rendered, or when no pair fits
    ``max_seq_len``. Emits one ``warn`` event about truncation, as
    :func:`tunegate.training.data.load_dataset` does.
    """
    role = file_role(validation)
    return load_fitting(path, iter_pairs(path, tokenizer, role), fit_pair, role, max_seq_len,
                        emit)


def fit_pair(pair: PreferencePair, tally: LengthTally) -> PreferencePair | None:
    """Both sides truncated to ``tally``'s limit, ``None`` when either has no answer token
    left; counted in ``tally`` by the longer side."""
    chosen, rejected = (truncated(pair.chosen, tally.max_seq_len),
                        truncated(pair.rejected, tally.max_seq_len))
    dropped = chosen is None or rejected is None
    tally.count(pair.line, max(pair.chosen.n_tokens, pair.rejected.n_tokens), dropped)
    return None if chosen is None or rejected is None else PreferencePair(chosen, rejected,
                                                                          pair.line)


def iter_pairs(path: str | Path, tokenizer: ChatTokenizer,
               role: FileRole) -> Iterator[PreferencePair]:
    """Each line of a preference file tokenized, whole (not truncated); raises as
    :func:`load_preferences` does for a line that cannot be trained on."""
    support = template_support(tokenizer)
    for line, row in read_rows(path, role.code, role.param):
        try:
            pair = encode_pair(row, tokenizer, support, line)
        except ChatFormatError as exc:
            raise TrainingFailed(role.code, f"Line {line} of the {role.label}: {exc}.",
                                 role.param) from exc
        yield pair
