"""A served model for the length of one request, with the engine's and the pool's failures
turned into API errors (``tunegate.errors``): what completions and embeddings share."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from tunegate.errors import InsufficientStorage, ServerError, TooManyRequests, TunegateError
from tunegate.serving.engine import EngineBusy, EngineDied, EngineError, EngineTimeout
from tunegate.serving.model import ServedModel
from tunegate.serving.pool import ModelBusy, ModelFiles, ModelLoadError, ModelNoSpace, ModelPool


class ModelBusyError(TooManyRequests):
    """429: the model's queue is full; the SDK waits and retries on its own."""

    code = "model_busy"


class ModelProcessDied(TunegateError):
    """503: the model's process ended mid-request; the next request starts it again, so the
    SDK's automatic resend is what the client wants."""

    status = 503
    type = "server_error"
    code = "model_process_died"
    retryable = True


class ModelTimedOut(TunegateError):
    """503: the model's process stopped producing tokens and was stopped. Sending the same
    request again would likely hang again, so the SDK is told not to."""

    status = 503
    type = "server_error"
    code = "model_timeout"
    retryable = False


@contextmanager
def lease(pool: ModelPool, files: ModelFiles) -> Iterator[ServedModel]:
    """The model for ``files``, with the engine's failures turned into API errors."""
    name = files.model_id
    try:
        with pool.use(files) as model:
            yield model
    except ModelNoSpace as exc:
        raise InsufficientStorage(f"Could not serve the model {name}: {exc}. Free space in the "
                                  "data folder (TUNEGATE_DATA), or serve base + adapter "
                                  "(TUNEGATE_SERVE_MERGED=disabled).") from None
    except ModelLoadError as exc:
        raise ServerError(f"Could not load the model {name}: {exc}") from None
    except ModelBusy as exc:
        raise ModelBusyError(f"The model {name} is busy ({exc}); retry in a few "
                             "seconds.", param="model") from None
    except EngineDied as exc:
        raise ModelProcessDied(f"The model {name} stopped while answering ({exc}); it is "
                               "started again for the next request.") from None
    except EngineBusy as exc:
        raise ModelBusyError(f"The model {name} is busy ({exc}); retry in a few seconds.",
                             param="model") from None
    except EngineTimeout as exc:
        raise ModelTimedOut(f"The model {name} took too long ({exc}).") from None
    except EngineError as exc:
        raise ServerError(f"The model {name} failed: {exc}") from None
