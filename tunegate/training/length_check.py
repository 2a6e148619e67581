"""The sequence-length check at ``validating_files``: the trainer's own data loading run in the
worker with a torch-free tokenizer, so that a file whose every example is longer than
``TUNEGATE_MAX_SEQ_LEN`` fails before its job is queued, not after a model has loaded.

Exact, not an estimate: examples go through the trainer's code (rendering, masks, truncation:
:func:`tunegate.training.data.iter_examples`, :func:`~tunegate.training.data.fit`,
:func:`~tunegate.training.data.check_tally`), with :class:`FileTokenizer` standing in for the
transformers tokenizer. It stands in exactly, so :func:`file_tokenizer` gives one, only when

- the base's Hugging Face folder is there without converting anything: an HF base, or a GGUF
  base converted by an earlier run (the model cache holds ``tokenizer.json``,
  ``tokenizer_config.json`` and ``chat_template.jinja``);
- its tokenizer class is the generic one (``TokenizersBackend``, ``PreTrainedTokenizerFast``),
  which transformers builds from ``tokenizer.json`` as it is; the ``tokenizers`` library (Rust,
  no torch) loads the same file, and encodes without truncation or padding as transformers does;
- the chat template is one string (``chat_template.jinja``, else ``tokenizer_config.json``), and
  the special tokens are named in ``tokenizer_config.json`` only. The template renders in
  transformers' Jinja environment (:func:`tunegate.chat.template.compile_template`) with the
  variables transformers gives it (special tokens, ``tools``, ``documents``,
  ``add_generation_prompt``).

Otherwise (a GGUF base on its first use, another tokenizer class, a validate-only host without
``tokenizers``) it returns ``None``: the trainer's check, which runs before the weights load, is
then the one that fails the job.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

from tunegate.chat.template import GLOBALS, compile_template
from tunegate.training.data import (
    ChatTokenizer,
    LengthTally,
    check_tally,
    file_role,
    fit,
    iter_examples,
)
from tunegate.training.preference import fit_pair, iter_pairs

# Tokenizer classes transformers builds from tokenizer.json unchanged (v5, and v4's name).
GENERIC_CLASSES = {"TokenizersBackend", "PreTrainedTokenizerFast"}
# The named special tokens transformers passes to chat templates (``special_tokens_map``).
SPECIAL_TOKENS = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token",
                  "mask_token")


class FileTokenizer:
    """A ``tokenizers`` tokenizer and a chat template, answering what data loading asks of a
    transformers tokenizer (:class:`tunegate.training.data.ChatTokenizer`)."""

    def __init__(self, tokenizer: Any, chat_template: str | None, special: dict[str, str]):
        tokenizer.no_truncation()  # transformers encodes without them unless asked
        tokenizer.no_padding()
        self._tokenizer = tokenizer
        self._template = compile_template(chat_template) if chat_template else None
        self._special = special
        self.chat_template = chat_template
        self.eos_token = special.get("eos_token")
        self.eos_token_id = tokenizer.token_to_id(self.eos_token) if self.eos_token else None

    def __call__(self, text: str, *, add_special_tokens: bool = True,
                 return_offsets_mapping: bool = False) -> dict[str, Any]:
        encoding = self._tokenizer.encode(text, add_special_tokens=add_special_tokens)
        out: dict[str, Any] = {"input_ids": encoding.ids}
        if return_offsets_mapping:
            out["offset_mapping"] = encoding.offsets
        return out

    def apply_chat_template(self, conversation: list[dict[str, Any]], *,
                            tools: list[dict[str, Any]] | None = None, tokenize: bool = False,
                            add_generation_prompt: bool = False) -> str:
        """The text transformers' ``apply_chat_template(..., tokenize=False)`` renders."""
        if tokenize:
            raise NotImplementedError("FileTokenizer renders text only")
        if self._template is None:
            raise ValueError("the tokenizer has no chat template")
        # transformers drops keys whose value is None before rendering.
        messages = [{key: value for key, value in message.items() if value is not None}
                    for message in conversation]
        return self._template.render(messages=messages, tools=tools, documents=None,
                                     add_generation_prompt=add_generation_prompt,
                                     **GLOBALS, **self._special)


def file_tokenizer(folder: Path | None) -> FileTokenizer | None:
    """The :class:`FileTokenizer` of a Hugging Face folder, or ``None`` where it would not be
    exact (see the module's doc). Loaded once per folder while its files stay unchanged."""
    if folder is None:
        return None
    files = [folder / name for name in ("tokenizer.json", "tokenizer_config.json",
                                        "chat_template.jinja")]
    try:
        stamp = tuple((path.stat().st_mtime_ns, path.stat().st_size) if path.exists() else None
                      for path in files)
    except OSError:
        return None
    return _load(str(folder), stamp)


@functools.lru_cache(maxsize=4)
def _load(folder: str,
          stamp: tuple[tuple[int, int] | None, ...]) -> FileTokenizer | None:
    del stamp  # part of the cache key only
    root = Path(folder)
    try:
        from tokenizers import Tokenizer
    except ImportError:  # a validate-only host without the training extra
        return None
    if not (root / "tokenizer.json").is_file() or (root / "special_tokens_map.json").exists() \
            or (root / "additional_chat_templates").exists():
        return None
    try:
        config = json.loads((root / "tokenizer_config.json").read_text(encoding="utf-8"))
        tokenizer = Tokenizer.from_file(str(root / "tokenizer.json"))
        template_file = root / "chat_template.jinja"
        template = (template_file.read_text(encoding="utf-8") if template_file.is_file()
                    else config.get("chat_template"))
    except Exception:  # tokenizers raises plain Exceptions; the trainer will say what is wrong
        return None
    if not isinstance(config, dict) or config.get("tokenizer_class") not in GENERIC_CLASSES \
            or not (template is None or isinstance(template, str)):
        return None
    special = {}
    for name in SPECIAL_TOKENS:
        value = config.get(name)
        if isinstance(value, dict):  # a serialized AddedToken
            value = value.get("content")
        if value is not None:
            if not isinstance(value, str):
                return None
            special[name] = value
    return FileTokenizer(tokenizer, template, special)


def check_lengths(path: str | Path, tokenizer: ChatTokenizer, max_seq_len: int, *,
                  method: str, validation: bool = False) -> LengthTally:
    """Read a file as the trainer will, keeping only counts; return them.

    Raises ``TrainingFailed`` as :func:`tunegate.training.data.load_dataset` (``method``
    ``supervised``) or :func:`tunegate.training.preference.load_preferences` (``dpo``) would:
    when no example fits ``max_seq_len``, and for a line the trainer would refuse.
    """
    role = file_role(validation)
    tally = LengthTally(max_seq_len)
    if method == "dpo":
        for pair in iter_pairs(path, tokenizer, role):
            fit_pair(pair, tally)
    else:
        for example in iter_examples(path, tokenizer, role):
            fit(example, tally)
    check_tally(tally, role)
    return tally
