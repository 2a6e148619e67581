"""Training files to token ids and labels: chat rendered by the base's own template, loss masks.

Rules (OpenAI's, see reference §5):

- ``{"messages": [...]}`` is rendered with ``tokenizer.apply_chat_template``. Only tokens of
  assistant messages are trained (their content and the end-of-turn token that closes them),
  and not those with ``weight: 0``. ``tools``/``tool_calls`` go through the template when it
  renders them, else the fallback of :mod:`tunegate.chat.format`.
- ``{"prompt": ..., "completion": ...}``: the prompt is masked, the completion and EOS trained;
  the tokens the tokenizer adds to plain text (BOS for Gemma) come first, as llama.cpp adds them
  to a ``/v1/completions`` prompt. This is the format for base models without a chat template.
- Examples longer than ``max_seq_len`` tokens (``TUNEGATE_MAX_SEQ_LEN``) are cut from the end;
  those left without any trained token are dropped. One ``warn`` event counts both and names the
  longest example (line, tokens); a file where every example is dropped fails, saying the same.
  The worker runs this same code at ``validating_files`` when it can
  (:mod:`tunegate.training.length_check`).

Where each assistant message starts and ends is found by rendering the conversation prefix up to
it (with the generation prompt) and through it, then mapping those character offsets to tokens
with the tokenizer's offset mapping. That works for any template that renders a conversation as
a growing string, without ``{% generation %}`` markers.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

from tunegate.chat.format import (
    ChatFormatError,
    TemplateInput,
    TemplateSupport,
    probe_support,
    to_template_messages,
)
from tunegate.domain.datasets import CHAT, PROMPT_COMPLETION, DatasetError, detect_format, iter_jsonl
from tunegate.domain.jsonl_text import UNLIMITED
from tunegate.training.errors import (
    INVALID_TRAINING_FILE,
    INVALID_VALIDATION_FILE,
    MISSING_CHAT_TEMPLATE,
    TrainingFailed,
)
from tunegate.training.messages import Emit, note

IGNORE = -100  # label of a token that is not trained (PyTorch's cross-entropy convention)

# The setting that sets ``max_seq_len``, named in messages about it.
MAX_SEQ_LEN_SETTING = "TUNEGATE_MAX_SEQ_LEN"


class ChatTokenizer(Protocol):
    """What loading data needs of a tokenizer: a transformers tokenizer (the trainer's) or
    :class:`tunegate.training.length_check.FileTokenizer` (the worker's, torch-free)."""

    @property
    def chat_template(self) -> Any: ...

    @property
    def eos_token(self) -> Any: ...

    @property
    def eos_token_id(self) -> Any: ...

    def __call__(self, text: str, *, add_special_tokens: bool,
                 return_offsets_mapping: bool) -> Any: ...

    def apply_chat_template(self, conversation: Any, *, tools: Any, tokenize: bool,
                            add_generation_prompt: bool) -> Any: ...


@dataclass(frozen=True)
class Example:
    """One tokenized example: ``labels[i]`` is ``input_ids[i]`` where trained, else ``IGNORE``."""

    input_ids: list[int]
    labels: list[int]
    line: int

    @property
    def n_tokens(self) -> int:
        return len(self.input_ids)

    @property
    def n_trained(self) -> int:
        return sum(1 for label in self.labels if label != IGNORE)


class HasTokens(Protocol):
    @property
    def n_tokens(self) -> int: ...


Item = TypeVar("Item", bound=HasTokens)


@dataclass(frozen=True)
class Dataset(Generic[Item]):
    """The usable examples (or preference pairs) of one file, in file order, plus what
    truncation did."""

    examples: list[Item]
    n_truncated: int
    n_dropped: int
    fingerprint: str

    @property
    def n_tokens(self) -> int:
        return sum(example.n_tokens for example in self.examples)


@dataclass(frozen=True)
class FileRole:
    """How errors about a file are reported: its error code, request parameter and name."""

    code: str
    param: str
    label: str


def file_role(validation: bool) -> FileRole:
    if validation:
        return FileRole(INVALID_VALIDATION_FILE, "validation_file", "validation file")
    return FileRole(INVALID_TRAINING_FILE, "training_file", "training file")


@dataclass
class LengthTally:
    """What the length limit does to a file's examples, counted as they are read.

    ``n_truncated`` counts the examples longer than ``max_seq_len``, ``n_dropped`` those of them
    left without a trained token (skipped); ``longest_*`` is the longest example of the file
    (for a preference pair, its longer side), the first of equals.
    """

    max_seq_len: int
    n_examples: int = 0
    n_truncated: int = 0
    n_dropped: int = 0
    longest_line: int = 0
    longest_tokens: int = 0
    n_tokens: int = 0  # tokens of the examples kept, as trained (cut to max_seq_len)

    def count(self, line: int, n_tokens: int, dropped: bool) -> None:
        self.n_examples += 1
        self.n_tokens += 0 if dropped else min(n_tokens, self.max_seq_len)
        self.n_truncated += n_tokens > self.max_seq_len
        self.n_dropped += dropped
        if n_tokens > self.longest_tokens:
            self.longest_line, self.longest_tokens = line, n_tokens

    @property
    def longest(self) -> str:
        return f"line {self.longest_line} ({self.longest_tokens} tokens)"


def load_dataset(path: str | Path, tokenizer: ChatTokenizer, max_seq_len: int, *,
                 validation: bool = False, emit: Emit | None = None) -> Dataset[Example]:
    """Tokenize every line of a JSONL file.

    Raises ``TrainingFailed`` (invalid_training_file / invalid_validation_file, naming the line)
    for a line that cannot be rendered or has nothing to train on, or when no example fits
    ``max_seq_len``; missing_chat_template for chat examples on a tokenizer without a template.
    Emits one ``warn`` event about truncation.
    """
    role = file_role(validation)
    return load_fitting(path, iter_examples(path, tokenizer, role), fit, role, max_seq_len, emit)


def load_fitting(path: str | Path, items: Iterable[Item],
                 fit: Callable[[Item, LengthTally], Item | None], role: FileRole,
                 max_seq_len: int, emit: Emit | None) -> Dataset[Item]:
    """The items that ``fit`` keeps within ``max_seq_len`` (it counts every one in the tally),
    then :func:`finish_loading`: the one loop of chat files and preference files."""
    tally = LengthTally(max_seq_len)
    kept = [fitted for item in items if (fitted := fit(item, tally)) is not None]
    finish_loading(tally, role, emit)
    return Dataset(kept, tally.n_truncated, tally.n_dropped, file_fingerprint(path))


def iter_examples(path: str | Path, tokenizer: ChatTokenizer,
                  role: FileRole) -> Iterator[Example]:
    """Each line of a supervised file tokenized, whole (not truncated); raises as
    :func:`load_dataset` does for a line that cannot be trained on."""
    support: TemplateSupport | None = None
    for line, row in read_rows(path, role.code, role.param):
        try:
            kind = detect_format(row)  # the upload check's detector
            if kind == CHAT:
                if support is None:
                    support = template_support(tokenizer)
                ids, labels = encode_chat(row, tokenizer, support)
            elif kind == PROMPT_COMPLETION:
                ids, labels = encode_completion(row, tokenizer)
            else:
                raise ChatFormatError("expected 'messages' or 'prompt' and 'completion'")
        except ChatFormatError as exc:
            raise TrainingFailed(role.code, f"Line {line} of the {role.label}: {exc}.",
                                 role.param) from exc
        if all(label_id == IGNORE for label_id in labels):
            raise TrainingFailed(role.code, f"Line {line} of the {role.label} has nothing to "
                                 "train on (no assistant message with weight 1).", role.param)
        yield Example(ids, labels, line)


def truncated(example: Example, max_seq_len: int) -> Example | None:
    """``example`` cut to ``max_seq_len`` tokens from the end; ``None`` if nothing trained is left."""
    if example.n_tokens <= max_seq_len:
        return example
    labels = example.labels[:max_seq_len]
    if all(label_id == IGNORE for label_id in labels):
        return None
    return Example(example.input_ids[:max_seq_len], labels, example.line)


def fit(example: Example, tally: LengthTally) -> Example | None:
    """``example`` as it trains under ``tally``'s limit (:func:`truncated`), counted in it."""
    kept = truncated(example, tally.max_seq_len)
    tally.count(example.line, example.n_tokens, dropped=kept is None)
    return kept


def check_tally(tally: LengthTally, role: FileRole) -> None:
    """Refuse a file left without examples: raises ``TrainingFailed`` (the role's code and
    param), naming the limit, its setting and the longest example when length is why."""
    if not tally.n_examples:
        raise TrainingFailed(role.code, f"The {role.label} has no usable example.", role.param)
    if tally.n_dropped == tally.n_examples:
        limit = tally.max_seq_len
        raise TrainingFailed(
            role.code,
            f"No example of the {role.label} fits the maximum sequence length of {limit} tokens "
            f"(setting {MAX_SEQ_LEN_SETTING}): all {tally.n_examples} are longer, and none has "
            f"a token to train on within its first {limit}. The longest is {tally.longest}. "
            f"Shorten the examples or raise {MAX_SEQ_LEN_SETTING}.", role.param)


def finish_loading(tally: LengthTally, role: FileRole, emit: Emit | None) -> None:
    """:func:`check_tally`, then one ``warn`` event about truncation (if any)."""
    check_tally(tally, role)
    if tally.n_truncated and emit:
        dropped = (f"; {tally.n_dropped} of them had no token to train on left and "
                   f"{'was' if tally.n_dropped == 1 else 'were'} skipped" if tally.n_dropped
                   else "")
        emit(note(f"{tally.n_truncated} of {tally.n_examples} example(s) in the {role.label} "
                  f"were longer than the maximum sequence length of {tally.max_seq_len} tokens "
                  f"(setting {MAX_SEQ_LEN_SETTING}) and were truncated from the end{dropped}. "
                  f"The longest is {tally.longest}.", "warn"))


def template_support(tokenizer: ChatTokenizer) -> TemplateSupport:
    """Probe whether the chat template renders ``tools`` and ``tool_calls`` itself.

    Raises ``TrainingFailed`` (missing_chat_template) when the tokenizer has no template.
    """
    if not getattr(tokenizer, "chat_template", None):
        raise TrainingFailed(MISSING_CHAT_TEMPLATE,
                             "The base model's tokenizer has no chat template, so chat examples "
                             "cannot be rendered. Use prompt/completion examples or a chat model.",
                             "model")
    return probe_support(lambda messages, tools: render_chat(tokenizer, messages, tools))


def encode_chat(row: dict[str, Any], tokenizer: ChatTokenizer,
                support: TemplateSupport) -> tuple[list[int], list[int]]:
    """Token ids and labels of one chat example (assistant turns with weight 1 trained)."""
    prepared = to_template_messages(row, support)
    try:
        full = render_chat(tokenizer, prepared.messages, prepared.tools)
    except Exception as exc:
        raise ChatFormatError(f"the chat template failed: {exc}") from exc
    spans = _assistant_spans(tokenizer, prepared, full)
    encoded = tokenizer(full, add_special_tokens=False, return_offsets_mapping=True)
    ids = list(encoded["input_ids"])
    labels = [token if any(start <= begin < end for start, end in spans) else IGNORE
              for token, (begin, _) in zip(ids, encoded["offset_mapping"], strict=True)]
    return ids, labels


def encode_completion(row: dict[str, Any], tokenizer: ChatTokenizer,
                      ) -> tuple[list[int], list[int]]:
    """Legacy prompt/completion: the prompt masked, the completion and EOS trained."""
    prompt, completion = row.get("prompt"), row.get("completion")
    if not isinstance(prompt, str) or not isinstance(completion, str):
        raise ChatFormatError("'prompt' and 'completion' must be strings")
    if not completion.strip():
        raise ChatFormatError("'completion' is empty, so there is nothing to train on")
    # With the special tokens the tokenizer adds to plain text (Gemma's BOS; SmolLM2's tokenizer
    # adds none), as llama.cpp adds them to a /v1/completions prompt: the model is trained on
    # the token layout it is served. They cover no text (offsets (0, 0)), so they stay masked.
    encoded = tokenizer(prompt + completion, add_special_tokens=True, return_offsets_mapping=True)
    ids = list(encoded["input_ids"])
    labels = [token if begin >= len(prompt) and end > begin else IGNORE
              for token, (begin, end) in zip(ids, encoded["offset_mapping"], strict=True)]
    if tokenizer.eos_token_id is not None:
        ids.append(tokenizer.eos_token_id)
        labels.append(tokenizer.eos_token_id)
    return ids, labels


def _assistant_spans(tokenizer: ChatTokenizer, prepared: TemplateInput,
                     full: str) -> list[tuple[int, int]]:
    """Character spans of ``full`` holding the trained assistant messages."""
    spans = []
    cursor = 0
    eos = tokenizer.eos_token or ""
    for index, trained in enumerate(prepared.trained):
        if not trained:
            continue
        span = _span_by_prefixes(tokenizer, prepared, full, index)
        if span is None:
            span = _span_by_search(prepared.messages[index], full, cursor, eos)
        start, end = span
        # Train the end-of-turn token, not the whitespace the template puts after it.
        closing = full.rfind(eos, start, end) if eos else -1
        end = closing + len(eos) if closing >= 0 else len(full[:end].rstrip())
        spans.append((start, end))
        cursor = end
    return spans


def _span_by_prefixes(tokenizer: ChatTokenizer, prepared: TemplateInput, full: str,
                      index: int) -> tuple[int, int] | None:
    try:
        before = render_chat(tokenizer, prepared.messages[:index], prepared.tools,
                             generation_prompt=True)
        through = render_chat(tokenizer, prepared.messages[: index + 1], prepared.tools)
    except Exception:
        return None
    if full.startswith(before) and full.startswith(through) and len(through) > len(before):
        return len(before), len(through)
    return None


def _span_by_search(message: dict[str, Any], full: str, cursor: int, eos: str) -> tuple[int, int]:
    # For templates whose prefixes are not prefixes of the whole (rare): find the content itself.
    content = message.get("content") or ""
    start = full.find(content, cursor) if content else -1
    if start < 0:
        raise ChatFormatError("could not locate an assistant message in the rendered chat "
                              "template; this template is not supported for training")
    end = start + len(content)
    closing = full.find(eos, end) if eos else -1
    return start, (closing + len(eos) if closing >= 0 else end)


def render_chat(tokenizer: ChatTokenizer, messages: list[dict[str, Any]],
                tools: list[dict[str, Any]] | None, generation_prompt: bool = False) -> str:
    """The chat template's text for ``messages`` (serving renders the same text, see tests)."""
    text = tokenizer.apply_chat_template(messages, tools=list(tools) if tools else None,
                                         tokenize=False, add_generation_prompt=generation_prompt)
    return str(text)


def read_rows(path: str | Path, code: str, param: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """The file's non-blank lines as objects, read by the upload check's own reader (UTF-8, or
    UTF-16 with a byte order mark, each line an object, nesting bounded); anything else fails
    the run with ``code``. Line lengths were checked at upload, against the server's setting."""
    try:
        yield from iter_jsonl(Path(path), UNLIMITED)
    except DatasetError as exc:
        raise TrainingFailed(code, exc.message, param) from None


def file_fingerprint(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
