"""An OpenAI-compatible HTTP endpoint as eval runs and reinforcement training use it: chat
completions for samples, and the ``GraderModels`` that model graders ask (tunegate.graders).
Neither the worker nor the trainer may import the API or the serving pool (layer rules), so
they reach models the way any client does: through
``/v1`` of this server (setting ``TUNEGATE_EVAL_ENDPOINT``, this server's own by default) or of
an external one. One client is shared by a run's threads (httpx's pool is thread-safe).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import httpx

from tunegate.domain.catalog import EMBEDDED_MODEL_ID
from tunegate.graders.models import ModelAnswer

# A busy model answers 429 (its queue is full) or 503 while it loads: wait and ask again.
RETRY_STATUSES = frozenset({429, 503})
RETRIES = 5
RETRY_SECONDS = 2.0
# A 64-token answer of a small CPU model takes seconds; a long one, with a queue, minutes.
TIMEOUT_SECONDS = 600.0


class ModelCallFailed(RuntimeError):
    """The endpoint did not answer a request (``code`` for the sample's error)."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


class EndpointModels:
    def __init__(self, base_url: str, api_key: str = "", concurrency: int = 4):
        headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
        self.client = httpx.Client(base_url=base_url.rstrip("/") + "/", headers=headers,
                                   timeout=TIMEOUT_SECONDS,
                                   limits=httpx.Limits(max_connections=max(concurrency, 1) * 2))

    def close(self) -> None:
        self.client.close()

    def _post(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        for attempt in range(RETRIES + 1):
            try:
                answer = self.client.post(path, json=dict(body))
            except httpx.HTTPError as exc:
                raise ModelCallFailed("model_unreachable", f"{path}: {exc}") from exc
            if answer.status_code in RETRY_STATUSES and attempt < RETRIES:
                time.sleep(float(answer.headers.get("retry-after") or RETRY_SECONDS))
                continue
            if answer.status_code != 200:
                raise ModelCallFailed(f"model_error_{answer.status_code}",
                                      f"{path} answered {answer.status_code}: {answer.text[:500]}")
            return answer.json()  # type: ignore[no-any-return]
        raise AssertionError("unreachable")

    def chat(self, model: str, messages: Sequence[Mapping[str, Any]],
             **parameters: Any) -> dict[str, Any]:
        """One chat completion, OpenAI's response object as it came."""
        body = {"model": model, "messages": list(messages),
                **{key: value for key, value in parameters.items() if value is not None}}
        return self._post("chat/completions", body)

    # GraderModels ---------------------------------------------------------------------------

    def complete(self, model: str, messages: Sequence[Mapping[str, Any]], *,
                 response_format: Mapping[str, Any] | None = None,
                 sampling: Mapping[str, Any] | None = None) -> ModelAnswer:
        response = self.chat(model, messages, response_format=response_format,
                             **dict(sampling or {}))
        return ModelAnswer.of_chat_completion(response)

    def embed(self, model: str | None, texts: Sequence[str]) -> list[list[float]]:
        # The cosine grader names no model: the embedded base, as the API's graders use.
        body: dict[str, Any] = {"input": list(texts), "model": model or EMBEDDED_MODEL_ID,
                                "encoding_format": "float"}
        response = self._post("embeddings", body)
        return [list(entry["embedding"]) for entry in response["data"]]

    def exists(self, model: str) -> bool:
        try:
            return self.client.get(f"models/{model}").status_code == 200
        except httpx.HTTPError:
            return False
