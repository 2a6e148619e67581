"""The models use cases (``/v1/models``), and what a model name means to a project: the
one lookup that job creation, serving and downloads answer from, each with its own code."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from tunegate.adapters import files as adapter_files
from tunegate.domain import catalog, former_names
from tunegate.domain.former_names import FormerName
from tunegate.domain.model_names import ResolvedName, resolve_name
from tunegate.errors import Conflict, Forbidden, InvalidRequest, NotFound, clip
from tunegate.serving.pool import ModelPool
from tunegate.serving.upstream import Forwarder
from tunegate.settings import OPENAI_MODEL_NAMES, Settings, Upstream
from tunegate.store.base import FineTunedModel, FineTuningJob, Store

FORMER_PAGE = 20


class Models:
    def __init__(self, settings: Settings, store: Store, pool: ModelPool,
                 forwarder: Forwarder):
        self.settings = settings
        self.store = store
        self.pool = pool  # a deleted model's process goes with it
        self.forwarder = forwarder  # models of other endpoints (TUNEGATE_UPSTREAMS)

    def list(self, project_id: str | None) -> list[dict[str, Any]]:
        local = ([m.to_api() for m in catalog.base_models(self.settings.base_models_dir)]
                 + [m.to_api() for m in self.store.list_models(project_id)]
                 + [former.to_api() for former in self.former_names(project_id)])
        # An upstream's name is listed unless a local model listed above answers to it (what
        # ``upstream`` asks the store, name by name, for a request).
        taken = {model["id"] for model in local}
        return local + [upstream_model(name, upstream) for name, upstream in self.forwarder.models()
                        if name not in taken and self.configured_upstream(name) is not None]

    def get(self, project_id: str | None, model_id: str) -> dict[str, Any]:
        base = catalog.find_base_model(self.settings.base_models_dir, model_id)
        if base is not None:
            return base.to_api()
        tuned = self.store.get_model(project_id, model_id)
        if tuned is not None:
            return tuned.to_api()
        former = self.former_name(project_id, model_id)
        if former is not None:
            return former.to_api()
        upstream = self.configured_upstream(model_id)  # no local model has the name: see above
        if upstream is None:
            raise no_such_model(model_id)
        return upstream_model(model_id, upstream)

    def upstream(self, project_id: str | None, model_id: str) -> Upstream | None:
        """The upstream that answers ``model_id`` for the project, if one does: a name the
        upstream setting lists, unless a local model answers to it first (a base model, a
        fine-tuned model or its former name, or an alias TUNEGATE_MODEL_ALIASES names one
        by one; the default OpenAI aliases do not count)."""
        upstream = self.configured_upstream(model_id)
        if upstream is None:
            return None
        resolved = self.resolve(project_id, model_id)
        return None if resolved.is_base or resolved.tuned is not None else upstream

    def configured_upstream(self, model_id: str) -> Upstream | None:
        """The upstream whose setting lists ``model_id``, unless an alias named one by one in
        TUNEGATE_MODEL_ALIASES takes the name (whether a local model has it is the caller's
        to know)."""
        if model_id in self.settings.named_aliases:
            return None
        return self.forwarder.find(model_id)

    def tuned(self, project_id: str | None, model_id: str) -> FineTunedModel:
        tuned = self.store.get_model(project_id, model_id)
        if tuned is None:
            raise no_such_model(model_id)
        return tuned

    def delete(self, project_id: str | None, model_id: str) -> str:
        if catalog.find_base_model(self.settings.base_models_dir, model_id):
            raise InvalidRequest(
                f"{model_id} is a base model; only fine-tuned models can be deleted. Remove "
                "the file from the models folder to withdraw a base model.",
                param="model", code="base_model_not_deletable",
            )
        tuned = self.tuned(project_id, model_id)
        if project_id is not None and tuned.project_id != project_id:
            raise Forbidden(
                f"The model {model_id} belongs to another project, which shares it with this "
                "one; only its own project (or an admin key) can delete it.",
                param="model", code="model_not_owned")
        # Jobs of the projects it is shared with count too; only the caller's are named.
        users = self.store.unfinished_jobs_using(None, model=model_id)
        if users:
            own = self.store.unfinished_jobs_using(project_id, model=model_id)
            job = (f"fine-tuning job {own[0]}" if own
                   else "a fine-tuning job of a project it is shared with")
            raise Conflict(
                f"Model {model_id} is the starting point of {job}, which has not finished; "
                "cancel the job or wait for it to end first.",
                param="model", code="model_in_use",
            )
        self.store.delete_model(project_id, model_id)
        self.pool.evict(model_id)
        adapter_files.remove(tuned)
        return model_id

    def adapter_download(self, project_id: str | None, model_id: str,
                         format: str) -> adapter_files.Download:
        """A fine-tuned model's adapter as a llama.cpp GGUF (``gguf``) or a zipped PEFT folder."""
        if catalog.find_base_model(self.settings.base_models_dir, model_id):
            raise InvalidRequest(f"{model_id} is a base model; only fine-tuned models and "
                                 "checkpoints have adapters.", param="model", code="no_adapter")
        return adapter_files.download(self.tuned(project_id, model_id), format)

    def check_trainable(self, project_id: str, model: str) -> None:
        """A base model, an alias of one (TUNEGATE_MODEL_ALIASES), or a fine-tuned model of
        the project; else 400 naming what is available."""
        resolved = self.resolve(project_id, model)
        if resolved.is_base:
            return
        self.refuse_unsupported(model)
        if resolved.alias is not None:
            if resolved.base is not None:
                return
            raise InvalidRequest(
                f"Model {model} stands for the base model {resolved.alias.target} on this server "
                f"(setting TUNEGATE_MODEL_ALIASES), which is not available. Available base "
                f"models: {self.base_model_ids()}.", param="model", code="model_not_available")
        # A fine-tuned model or checkpoint of the project, or one shared with it.
        if resolved.tuned is not None:
            return
        if self.settings.model_aliases:
            aliases = ("; OpenAI model names standing for a local base model (setting "
                       "TUNEGATE_MODEL_ALIASES): "
                       + ", ".join(name for name, _ in self.settings.model_aliases))
        elif model in OPENAI_MODEL_NAMES:
            aliases = ("; OpenAI model names are not accepted on this server (setting "
                       "TUNEGATE_MODEL_ALIASES is off)")
        else:
            aliases = ""
        raise InvalidRequest(
            f"Model {clip(model)} is not available for fine-tuning or does not exist. Available base "
            f"models: {self.base_model_ids()}; fine-tuned models and checkpoints (ft:…) "
            f"of this project, or shared with it, can be trained further{aliases}.",
            param="model", code="model_not_available",
        )

    def resolve(self, project_id: str | None, model_id: str) -> ResolvedName:
        """What ``model_id`` means to ``project_id`` (its fine-tuned models and those shared
        with it; ``None``: every project's)."""
        return resolve_name(self.settings.base_models_dir, self.settings.model_aliases, model_id,
                            former_names.tuned_or_successor(
                                lambda name: self.store.get_model(project_id, name),
                                lambda pairs: self.jobs_with(project_id, pairs)))

    def jobs_with(self, project_id: str | None, pairs: Mapping[str, str]) -> Sequence[FineTuningJob]:
        """The project's jobs whose metadata has ``pairs``, newest first (a first page: a
        model migrated more than a page of times over answers from its newest jobs)."""
        return self.store.list_jobs(project_id, after=None, limit=FORMER_PAGE,
                                    metadata=pairs).items

    def former_name(self, project_id: str | None, name: str) -> FormerName | None:
        """``name`` as a former name of a migrated fine-tune the project sees."""
        model = former_names.successor(name, lambda own: self.store.get_model(project_id, own),
                                       lambda pairs: self.jobs_with(project_id, pairs))
        if model is None:
            return None
        return FormerName(name, model, model.created_at)

    def former_names(self, project_id: str | None) -> Sequence[FormerName]:
        """Every former name the project's succeeded migrated jobs answer to, oldest first."""
        found: dict[str, FormerName] = {}
        after = None
        while True:  # metadata cannot be filtered on a key alone: the jobs are read page by page
            page = self.store.list_jobs(project_id, after=after, limit=100, metadata=None)
            for job in page.items:
                name = former_names.former_name(job)
                if name is not None and name not in found:  # the newest job wins
                    former = self.former_name(project_id, name)
                    if former is not None:
                        found[name] = former
            if not page.has_more or not page.items:
                break
            after = page.items[-1].id
        return sorted(found.values(), key=lambda former: former.created_at)

    def refuse_unsupported(self, model_id: str) -> None:
        """400 ``unsupported_base_model`` when ``model_id`` is a refused file of the models
        folder (an architecture tunegate cannot export or serve): why, and what works."""
        refused = catalog.refused_base_model(self.settings.base_models_dir, model_id)
        if refused is not None:
            raise InvalidRequest(refused.message(), param="model", code="unsupported_base_model")

    def base_model_ids(self) -> str:
        return ", ".join(m.id for m in catalog.base_models(self.settings.base_models_dir)) or "none"


def upstream_model(name: str, upstream: Upstream) -> dict[str, Any]:
    """OpenAI's model object for a model another endpoint serves: ``owned_by`` names the
    upstream (its setting's ``name``)."""
    return {"id": name, "object": "model", "created": 0, "owned_by": upstream.name,
            "shutdown_date": None, "served_by": None}


def no_such_model(model_id: str) -> NotFound:
    return NotFound(f"The model `{clip(model_id)}` does not exist or you do not have access to it.",
                    param="model", code="model_not_found")
