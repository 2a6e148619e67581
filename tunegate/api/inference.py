"""The inference use cases (``/v1/chat/completions``, ``/v1/completions``, ``/v1/embeddings``):
which files llama.cpp runs for the model named, then the generation or the embedding itself
(``tunegate.serving``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from tunegate.adapters import files as adapter_files
from tunegate.api.models import Models, no_such_model
from tunegate.api.stored_completions import (
    StoredCompletions,
    check_request,
    wants_storing,
    with_usage,
)
from tunegate.errors import InvalidRequest
from tunegate.serving import completions, embeddings
from tunegate.serving.completions import GenerationRequest
from tunegate.serving.pool import ModelFiles, ModelPool


class Completions:
    def __init__(self, pool: ModelPool, models: Models, stored: StoredCompletions):
        self.pool = pool
        self.models = models
        self.stored = stored

    def chat(self, project_id: str | None, body: Mapping[str, Any], *,
             keep_for: str | None = None) -> dict[str, Any] | Iterator[dict[str, Any]]:
        """An OpenAI chat completion; with ``stream``, an iterator of chunk objects. A model
        of another endpoint (TUNEGATE_UPSTREAMS) answers through it. With ``store: true`` in
        ``body`` and ``keep_for`` (the caller's project), the exchange is stored there once the
        answer is whole."""
        if keep_for is None or not wants_storing(body):
            return self._answer(project_id, body, "/chat/completions", completions.chat_request)
        check_request(body)
        sent = with_usage(body) if body.get("stream") else body  # what is stored has usage
        return self.stored.kept(keep_for, body, self._answer(
            project_id, sent, "/chat/completions", completions.chat_request))

    def text(self, project_id: str | None,
                   body: Mapping[str, Any]) -> dict[str, Any] | Iterator[dict[str, Any]]:
        """An OpenAI (legacy) text completion; with ``stream``, an iterator of chunk objects. A
        model of another endpoint (TUNEGATE_UPSTREAMS) answers through it."""
        return self._answer(project_id, body, "/completions", completions.completion_request)

    def _answer(self, project_id: str | None, body: Mapping[str, Any], path: str,
                parse: Callable[[Mapping[str, Any]], GenerationRequest]
                ) -> dict[str, Any] | Iterator[dict[str, Any]]:
        """The answer to ``body`` (a request to ``path``): from the endpoint that serves its
        model when TUNEGATE_UPSTREAMS names one, else generated here by llama.cpp (the
        request checked by ``parse``)."""
        upstream = self.models.upstream(project_id, str(body.get("model")))
        if upstream is not None:
            return self.models.forwarder.forward(upstream, path, body)
        request = parse(body)
        return completions.run(self.pool, self.servable(project_id, request.model), request)

    def servable(self, project_id: str | None, model_id: str) -> ModelFiles:
        """What llama.cpp loads for ``model_id``: a GGUF base, plus the adapter for ft models.

        An alias runs the base it stands for, in the base's own process (the reply's ``model``
        is still the name the client sent)."""
        resolved = self.models.resolve(project_id, model_id)
        if not resolved.is_base:
            self.models.refuse_unsupported(model_id)
        base, adapter = resolved.base, None
        served_id = model_id  # the pool's key: an alias shares its base's process
        if resolved.alias is not None:
            if base is None:
                raise InvalidRequest(
                    f"The model {model_id} stands for the base model {resolved.alias.target} on "
                    "this server (setting TUNEGATE_MODEL_ALIASES), which is not among the base "
                    "models.", param="model", code="model_not_servable")
            served_id = base.id
        elif resolved.tuned is not None:
            tuned = resolved.tuned
            if base is None:
                raise InvalidRequest(
                    f"The model {model_id} was trained from {tuned.base_model}, which is no "
                    "longer among the base models.", param="model", code="model_not_servable")
            adapter = adapter_files.gguf_file(tuned)
            served_id = tuned.id  # a former name (a migrated ft:) shares its model's process
            if adapter is None and base.kind == "gguf":
                raise InvalidRequest(f"The model {model_id} has no llama.cpp adapter "
                                     f"({adapter_files.ADAPTER_GGUF}).", param="model",
                                     code="model_not_servable")
        if base is None:
            raise no_such_model(model_id)
        if base.kind != "gguf":
            raise InvalidRequest(
                f"{model_id} cannot be served: its base model {base.id} is a Hugging Face folder, "
                "and tunegate serves completions with llama.cpp, which runs GGUF files only. "
                "Add the folder with `tunegate models add FOLDER` instead (it converts it to a "
                "GGUF with llama.cpp's convert_hf_to_gguf.py) to serve it and to fine-tune "
                "servable models from it.",
                param="model", code="model_not_servable")
        return ModelFiles(served_id, base.path, adapter)


class Embeddings:
    """Embeddings from any model chat completions can serve (a base, an alias, a fine-tuned
    model or a checkpoint), computed by the same model process."""

    def __init__(self, completions: Completions):
        self.completions = completions  # which model files a name runs, and the pool

    def create(self, project_id: str | None, body: Mapping[str, Any]) -> dict[str, Any]:
        """OpenAI's embeddings ``list`` for a ``/v1/embeddings`` body."""
        request = embeddings.embedding_request(body)
        files = self.completions.servable(project_id, request.model)
        return embeddings.run(self.completions.pool, files, request)

    def embed(self, model: str, texts: Sequence[str],
              project_id: str | None = None) -> list[list[float]]:
        """Unit-length vectors of ``texts`` by ``model``, in order, for callers inside
        tunegate (the ``cosine`` grader): the checks and errors of ``/v1/embeddings``.
        ``project_id`` is whose fine-tuned models the name may mean (None: any project's)."""
        request = embeddings.embedding_request({"model": model, "input": list(texts)})
        files = self.completions.servable(project_id, request.model)
        return embeddings.embed(self.completions.pool, files, request)[0]
