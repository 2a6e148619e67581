"""How a grader reaches a model: the caller (API or worker) passes an object with these methods,
backed by the serving pool or an external OpenAI-compatible endpoint."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class ModelAnswer:
    text: str
    prompt_tokens: int
    completion_tokens: int
    refusal: str | None = None

    @classmethod
    def of_chat_completion(cls, completion: Mapping[str, Any]) -> ModelAnswer:
        """The first choice of an OpenAI chat completion (in-process or over HTTP)."""
        message = completion["choices"][0]["message"]
        usage = completion.get("usage") or {}
        return cls(text=message.get("content") or "",
                   prompt_tokens=int(usage.get("prompt_tokens", 0)),
                   completion_tokens=int(usage.get("completion_tokens", 0)),
                   refusal=message.get("refusal"))


class GraderModels(Protocol):
    def complete(self, model: str, messages: Sequence[Mapping[str, Any]], *,
                 response_format: Mapping[str, Any] | None = None,
                 sampling: Mapping[str, Any] | None = None) -> ModelAnswer:
        """One chat completion (``response_format`` as OpenAI's chat API takes it)."""
        ...

    def embed(self, model: str | None, texts: Sequence[str]) -> list[list[float]]:
        """One vector per text; ``model`` None means the default embedding model."""
        ...

    def exists(self, model: str) -> bool:
        """Whether ``model`` can be called at all, checked when a grader is created."""
        ...
