"""The API's use cases over one store and data folder, one object per resource, the way
``Uploads`` is: ``files``, ``uploads``, ``jobs``, ``models``, ``permissions``, ``completions``,
``embeddings``, ``stored_completions``, ``responses``, ``graders``, ``evals``, ``eval_runs``
and ``webhooks``. Handlers call exactly one method of one of them; that layer owns the rules
and speaks only in domain objects and ``tunegate.errors`` exceptions.

Every method takes the caller's ``project_id``: objects of other projects are answered exactly
like missing ones (404, same message). Reads also take ``None``, an admin key's "every project";
new objects always go into a real project.
"""

from __future__ import annotations

from tunegate.api.eval_runs import EvalRuns
from tunegate.api.evals import Evals
from tunegate.api.event_feed import EventFeed
from tunegate.api.files import Files, Upload
from tunegate.api.graders import Graders
from tunegate.api.inference import Completions, Embeddings
from tunegate.api.jobs import Jobs
from tunegate.api.metrics import Metrics
from tunegate.api.models import Models
from tunegate.api.permissions import Permissions
from tunegate.api.responses import Responses
from tunegate.api.stored_completions import StoredCompletions
from tunegate.api.uploads import Uploads
from tunegate.api.webhooks import Webhooks
from tunegate.domain.files import FileStorage
from tunegate.domain.uploads import UploadStorage
from tunegate.serving import open_pool
from tunegate.serving.upstream import Forwarder
from tunegate.settings import Settings
from tunegate.store.base import Store

__all__ = ["Service", "Upload"]


class Service:
    def __init__(self, settings: Settings, store: Store, storage: FileStorage):
        self.settings = settings
        self.store = store
        self.storage = storage
        # Parts of pending uploads (the Uploads API).
        self.upload_storage = UploadStorage(settings.uploads_dir)
        # Model processes start on first use: nothing of llama.cpp runs until a completion.
        self.inference = open_pool(settings)
        # New job events for the live event streams: one poller for all of them.
        self.live_events = EventFeed(store)
        # Chat and completions of the models other endpoints serve (TUNEGATE_UPSTREAMS).
        self.upstream = Forwarder(settings.upstreams, settings.inference_timeout)
        self.models = Models(settings, store, self.inference, self.upstream)
        self.files = Files(settings, store, storage)
        self.uploads = Uploads(settings, store, storage, self.upload_storage)
        self.permissions = Permissions(store)
        # Chat completions made with store: true, and OpenAI's routes reading them back.
        self.stored_completions = StoredCompletions(store)
        self.completions = Completions(self.inference, self.models, self.stored_completions)
        self.embeddings = Embeddings(self.completions)
        self.graders = Graders(settings, self.completions)
        # Evals and reinforcement rewards grade with models this server serves, unless an
        # external endpoint serves them.
        model_check = None if settings.eval_endpoint else self._servable
        self.jobs = Jobs(settings, store, self.models, self.live_events, model_check)
        self.evals = Evals(store, model_check)
        self.responses = Responses(self.completions)
        self.eval_runs = EvalRuns(store, storage, self.evals, model_check,
                                  dashboard_url=f"{settings.own_url}/dashboard/",
                                  max_line_bytes=settings.max_line_bytes)
        self.webhooks = Webhooks(settings, store)
        # GET /metrics (outside /v1): request figures counted here, the store's read per scrape.
        self.metrics = Metrics(store, self.inference)

    def _servable(self, project_id: str | None, model: str) -> None:
        self.completions.servable(project_id, model)
