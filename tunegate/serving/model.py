"""A served model: its process (``LlamaServer``) plus its chat template, with the operations
completions need (render and tokenize a prompt, measure it against the context, generate) and
those embeddings need (tokenize an input, embed token sequences)."""

from __future__ import annotations

import logging
from collections.abc import Generator, Sequence
from pathlib import Path
from typing import Any

from tunegate.chat.template import TEMPLATE_KEY, ChatTemplate, TemplateError
from tunegate.domain.architectures import read_gguf_header
from tunegate.serving.engine import Delta, EngineConfig, EngineStartError, LlamaServer, Sampling
from tunegate.serving.merged import MergedModels, MergeError, MergeNoSpace
from tunegate.serving.pool import ModelFiles, ModelLoadError, ModelNoSpace

log = logging.getLogger("tunegate.serving")


class ServedModel:
    """One model id's running process. Safe to share between threads: the process queues and
    batches the requests itself."""

    def __init__(self, engine: LlamaServer, template_source: str | None):
        self.engine = engine
        props = engine.props
        self._bos, self._eos = str(props.get("bos_token") or ""), str(props.get("eos_token") or "")
        self._template = (ChatTemplate(template_source, self._bos, self._eos)
                          if template_source is not None else None)

    @property
    def n_ctx(self) -> int:
        return self.engine.n_ctx

    @property
    def n_vocab(self) -> int:
        """Tokens in the model's vocabulary: ids run from 0 to ``n_vocab - 1``."""
        return self.engine.n_vocab

    def alive(self) -> bool:
        return self.engine.alive()

    def close(self) -> None:
        self.engine.close()

    @property
    def template(self) -> ChatTemplate:
        if self._template is None:
            raise TemplateError("the model's GGUF has no chat template (tokenizer.chat_template); "
                                "use /v1/completions with a prompt you format yourself")
        return self._template

    def chat_prompt(self, messages: list[dict[str, Any]],
                    tools: list[dict[str, Any]] | None = None, prefix: str = "") -> list[int]:
        """``messages`` (and ``tools``) rendered by the GGUF's own chat template, as tokens,
        followed by ``prefix``: the start of the assistant's answer, given rather than generated.

        The template writes its own special tokens: nothing is added in front.
        """
        text = self.template.chat_text(messages, tools) + prefix
        return self.engine.tokenize(text, add_special=False)

    def text_prompt(self, prompt: str) -> list[int]:
        """A raw completion prompt as tokens (special tokens in the text are honoured, BOS
        added when the model asks for it); an empty prompt starts from BOS."""
        tokens = self.engine.tokenize(prompt, add_special=True)
        if not tokens and self._bos:
            tokens = self.engine.tokenize(self._bos, add_special=False)
        return tokens

    def embedding_input(self, text: str) -> list[int]:
        """``text`` as the tokens its embedding is computed from: special tokens written in it
        are plain text (an input is data, not a layout), BOS added when the model asks for it."""
        return self.engine.tokenize(text, add_special=True, parse_special=False)

    @property
    def width(self) -> int:
        """The length of this model's embeddings."""
        return self.engine.n_embd

    def embed(self, inputs: Sequence[Sequence[int]]) -> list[list[float]]:
        """Unit-length embeddings of token sequences that each fit the context, in order."""
        return self.engine.embed(inputs)

    def detokenize(self, tokens: Sequence[int]) -> str:
        return self.engine.detokenize(tokens)

    def generate(self, prompt: Sequence[int], sampling: Sampling, max_tokens: int,
                 stop: Sequence[str] = ()) -> Generator[Delta, None, None]:
        return self.engine.generate(prompt, sampling, max_tokens, stop)


class ModelLoader:
    """Starts a model process for ``ModelFiles``: a fine-tuned model from its merged copy
    (``merged``, the fastest form) or, without one, as the base GGUF plus its LoRA adapter."""

    def __init__(self, config: EngineConfig, merged: MergedModels | None):
        self.config = config
        self.merged = merged

    def __call__(self, files: ModelFiles) -> ServedModel:
        model, adapter = files.base, files.adapter
        try:
            if adapter is not None and self.merged is not None:
                model, adapter = self.merged.merged(files.base, adapter), None
            return ServedModel(LlamaServer(model, adapter, self.config), _chat_template(model))
        except MergeNoSpace as exc:
            raise ModelNoSpace(str(exc)) from exc
        except MergeError as exc:
            log.error("%s: %s; llama.cpp's output: %s", files.model_id, exc, exc.output)
            raise ModelLoadError(f"{exc} (the server log has llama.cpp's output)") from exc
        except EngineStartError as exc:
            raise ModelLoadError(str(exc)) from exc


def _chat_template(gguf_path: Path) -> str | None:
    """The chat template stored in a GGUF file, or None (read from its header alone)."""
    template = read_gguf_header(gguf_path).values.get(TEMPLATE_KEY)
    return None if template is None else str(template)
