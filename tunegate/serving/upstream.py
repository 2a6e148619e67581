"""Chat and text completions forwarded to another OpenAI-compatible endpoint, for the model
names ``TUNEGATE_UPSTREAMS`` lists (``tunegate.settings.Upstream``): an application points at
tunegate while an old model still answers somewhere else.

The request body goes as the client sent it (less ``store`` and ``metadata``: tunegate keeps
the exchange itself), with the upstream's key read from the environment variable its setting
names, at each request, and sent only to that upstream. The answer comes back as the upstream
gave it, under an id of tunegate's (ids sort by time here: stored completions page by id); a
stream is passed on event by event as the upstream sends them (its lines split as
llama.cpp's are, on line feeds only: tunegate.serving.sse). The upstream's
refusals become tunegate's errors, in OpenAI's envelope: its 400 and 404 as ours, its 429 as
ours with its ``Retry-After``, a refused key, a failure or no answer at all as 503 naming the
upstream (never the key).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Generator, Iterator, Mapping
from typing import Any

import httpx

from tunegate import ids
from tunegate.errors import InvalidRequest, NotFound, TooManyRequests, TunegateError, clip
from tunegate.serving.completions import CHAT_ID, COMPLETION_ID
from tunegate.serving.sse import sse_lines
from tunegate.settings import Upstream

log = logging.getLogger(__name__)
Json = dict[str, Any]
# What the upstream is not sent: tunegate stores the exchange itself (store: true).
KEPT_HERE = ("store", "metadata")
CONNECT_SECONDS = 10.0


class UpstreamUnavailable(TunegateError):
    """503: the upstream did not answer, failed, or refused tunegate's key."""

    status = 503
    type = "server_error"
    code = "upstream_unavailable"
    retryable = True


class Forwarder:
    """Which upstream serves a model name, and the forwarding itself (one pooled client)."""

    def __init__(self, upstreams: tuple[Upstream, ...], read_timeout: float):
        self.by_model = {model: upstream for upstream in upstreams for model in upstream.models}
        self.client = httpx.Client(timeout=httpx.Timeout(read_timeout, connect=CONNECT_SECONDS))

    def find(self, model: str) -> Upstream | None:
        return self.by_model.get(model)

    def models(self) -> list[tuple[str, Upstream]]:
        return list(self.by_model.items())

    def forward(self, upstream: Upstream, path: str,
                body: Mapping[str, Any]) -> Json | Iterator[Json]:
        """POST ``body`` to the upstream's ``path`` (``/chat/completions``, ``/completions``):
        its answer, or with ``stream`` an iterator of its events' objects. Failures before the
        answer starts raise here, so that they become HTTP statuses."""
        sent = {key: value for key, value in body.items() if key not in KEPT_HERE}
        request = self.client.build_request("POST", upstream.base_url + path, json=sent,
                                            headers=_headers(upstream))
        try:
            response = self.client.send(request, stream=bool(body.get("stream")))
        except httpx.HTTPError as exc:
            raise _unreachable(upstream, exc) from None
        if response.status_code >= 300:
            try:
                response.read()
            except httpx.HTTPError as exc:
                raise _unreachable(upstream, exc) from None
            finally:
                response.close()
            raise refusal(upstream, response.status_code, response.text,
                          response.headers.get("retry-after"))
        own_id = ids.new_id(CHAT_ID if path == "/chat/completions" else COMPLETION_ID)
        if not body.get("stream"):
            try:
                answer = response.json()
            except ValueError:
                raise UpstreamUnavailable(f"The upstream {upstream.name} answered with "
                                          "something that is not JSON.") from None
            return _with_id(answer, own_id)
        return _renamed(_events(upstream, response), own_id)

    def close(self) -> None:
        self.client.close()


def _with_id(answer: Any, own_id: str) -> Json:
    """The upstream's answer under an id of tunegate's, which sorts by time as every id of a
    stored completion must (its listings page by id), with the keys tunegate's contract always
    sends and an upstream may leave out (OpenAI omits ``tool_calls`` when there are none) set
    to null."""
    if not isinstance(answer, dict):
        raise UpstreamUnavailable("The upstream answered with JSON that is not an object.")
    shaped = {"system_fingerprint": None, "usage": None, **answer, "id": own_id}
    shaped["choices"] = [_choice(choice) for choice in answer.get("choices") or []]
    return shaped


def _choice(choice: Any) -> Any:
    if not isinstance(choice, dict):
        return choice
    shaped = {"logprobs": None, "finish_reason": None, **choice}
    if isinstance(choice.get("message"), dict):
        shaped["message"] = {"content": None, "refusal": None, "tool_calls": None,
                             **choice["message"]}
    return shaped


def _renamed(events: Generator[Json, None, None], own_id: str) -> Iterator[Json]:
    try:
        for event in events:
            yield _with_id(event, own_id)
    finally:
        events.close()  # a client gone closes the upstream's stream too


def _headers(upstream: Upstream) -> dict[str, str]:
    key = upstream.api_key()
    return {"Authorization": f"Bearer {key}"} if key else {}


def _events(upstream: Upstream, response: httpx.Response) -> Generator[Json, None, None]:
    """The objects of a server-sent event stream, up to ``[DONE]``; an error event, or a stream
    that breaks off, raises (the client gets it as an error event)."""
    try:
        for line in sse_lines(response.iter_bytes()):
            if not line.startswith("data:"):
                continue  # comments, event names, blank lines between events
            data = line[len("data:"):].strip()
            if data == "[DONE]":
                return
            event = json.loads(data)
            if isinstance(event, dict) and "error" in event:
                raise refusal(upstream, 500, json.dumps(event), None)
            yield event
    except (httpx.HTTPError, ValueError) as exc:
        raise _unreachable(upstream, exc) from None
    finally:
        response.close()


def _unreachable(upstream: Upstream, exc: Exception) -> UpstreamUnavailable:
    log.warning("Upstream %s at %s: %s", upstream.name, upstream.base_url, type(exc).__name__)
    return UpstreamUnavailable(f"The upstream {upstream.name} ({upstream.base_url}) did not "
                               f"answer: {type(exc).__name__}.")


def refusal(upstream: Upstream, status: int, text: str,
            retry_after: str | None) -> TunegateError:
    """The upstream's error answer as tunegate's error."""
    error = _error_of(text)
    said = clip(str(error.get("message") or text or f"HTTP {status}"), 500)
    message = f"The upstream {upstream.name} answered {status}: {said}"
    if status in (401, 403):
        variable = upstream.api_key_env or "(none set)"
        failed = UpstreamUnavailable(
            f"The upstream {upstream.name} refused tunegate's key with {status} (its setting "
            f"reads it from the variable {variable}). Its message is not repeated here: "
            "providers quote part of the key in it.", code="upstream_unauthorized")
        failed.retryable = False
        return failed
    if status == 404:
        return NotFound(message, param=_text(error.get("param")) or "model",
                        code=_text(error.get("code")) or "model_not_found")
    if status == 429:
        seconds = int(retry_after) if retry_after and retry_after.isdigit() else None
        return TooManyRequests(message, retry_after=seconds, code="upstream_rate_limited")
    if 400 <= status < 500 and status not in (408, 409):
        return InvalidRequest(message, param=_text(error.get("param")),
                              code=_text(error.get("code")) or "upstream_invalid_request")
    return UpstreamUnavailable(message)


def _text(value: Any) -> str | None:
    return clip(str(value), 64) if value not in (None, "") else None


def _error_of(text: str) -> Mapping[str, Any]:
    try:
        body = json.loads(text)
    except ValueError:
        return {}
    error = body.get("error") if isinstance(body, dict) else None
    return error if isinstance(error, dict) else {}
