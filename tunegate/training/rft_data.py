"""Reinforcement fine-tuning files to prompts: token ids to sample from, and the grader's item.

A line is OpenAI's RFT example, read by the same rule as the file check
(:func:`tunegate.domain.rft_format.rft_example`): ``messages`` (the last one the user's),
optional ``tools``, and any other keys, which together are the ``item`` a grader reads as
``{{item.…}}``. Each prompt is rendered with the base's chat template
and its generation prompt (the text the model answers after), exactly as serving renders a chat
request, so what is trained is what is served.

A prompt longer than ``max_seq_len`` minus the completion budget cannot be sampled whole; it is
dropped (not cut: a prompt without its end asks another question), counted, and reported in one
``warn`` event as the other formats report truncation.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunegate.chat.format import ChatFormatError, TemplateSupport, to_template_messages
from tunegate.domain.chat_examples import DatasetError
from tunegate.domain.rft_format import rft_example
from tunegate.training.data import (
    ChatTokenizer,
    Dataset,
    Emit,
    FileRole,
    LengthTally,
    file_role,
    load_fitting,
    read_rows,
    template_support,
)
from tunegate.training.errors import TrainingFailed

# Chat templates with a thinking switch name it so (Qwen3's); see hyperparams.reasoning_effort.
THINKING_SWITCH = "enable_thinking"


@dataclass(frozen=True)
class Prompt:
    """One line: the rendered prompt's token ids and the grader's ``item``."""

    input_ids: list[int]
    item: Mapping[str, Any] = field(hash=False)
    line: int

    @property
    def n_tokens(self) -> int:
        return len(self.input_ids)


def thinking_switch(reasoning_effort: str, tokenizer: ChatTokenizer) -> dict[str, bool]:
    """The template keyword for ``reasoning_effort``: ``enable_thinking`` off at ``low`` and on
    at ``medium``/``high``, for a template that has the switch; nothing otherwise."""
    template = getattr(tokenizer, "chat_template", None)
    if reasoning_effort == "default" or not isinstance(template, str) or \
            THINKING_SWITCH not in template:
        return {}
    return {THINKING_SWITCH: reasoning_effort != "low"}


def encode_prompt(row: dict[str, Any], tokenizer: ChatTokenizer, support: TemplateSupport,
                  line: int, switch: Mapping[str, bool]) -> Prompt:
    example = rft_example(row, line)  # raises DatasetError naming the line
    prepared = to_template_messages({"messages": example.messages, "tools": example.tools},
                                    support)
    try:
        text = tokenizer.apply_chat_template(  # type: ignore[call-arg]
            prepared.messages, tools=list(prepared.tools) if prepared.tools else None,
            tokenize=False, add_generation_prompt=True, **switch)
    except Exception as exc:
        raise ChatFormatError(f"the chat template failed: {exc}") from exc
    ids = list(tokenizer(str(text), add_special_tokens=False,
                         return_offsets_mapping=False)["input_ids"])
    return Prompt(ids, example.item, line)


def load_prompts(path: str | Path, tokenizer: ChatTokenizer, max_seq_len: int, *,
                 validation: bool = False, emit: Emit | None = None,
                 completion_tokens: int = 0, reasoning_effort: str = "default",
                 ) -> Dataset[Prompt]:
    """Every line of an RFT file as a prompt; raises ``TrainingFailed`` (the file's code,
    naming the line) for a line that is not an RFT example, or when no prompt fits."""
    role = file_role(validation)
    room = max(1, max_seq_len - completion_tokens)
    switch = thinking_switch(reasoning_effort, tokenizer)

    def fit(prompt: Prompt, tally: LengthTally) -> Prompt | None:
        dropped = prompt.n_tokens > room
        tally.count(prompt.line, prompt.n_tokens, dropped)
        return None if dropped else prompt

    return load_fitting(path, iter_prompts(path, tokenizer, role, switch), fit, role,
                        room, emit)


def iter_prompts(path: str | Path, tokenizer: ChatTokenizer, role: FileRole,
                 switch: Mapping[str, bool]) -> Iterator[Prompt]:
    support = template_support(tokenizer)
    for line, row in read_rows(path, role.code, role.param):
        try:
            yield encode_prompt(row, tokenizer, support, line, switch)
        except DatasetError as exc:
            raise TrainingFailed(role.code, exc.message, role.param) from exc
        except ChatFormatError as exc:
            raise TrainingFailed(role.code, f"Line {line} of the {role.label}: {exc}.",
                                 role.param) from exc
