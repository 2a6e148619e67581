"""Webhooks: endpoints a project registers, the events they get, and how a message is signed.

The events are OpenAI's (``fine_tuning.job.succeeded|failed|cancelled`` and
``eval.run.succeeded|failed|canceled``, two spellings of cancel as OpenAI has them), the payload
``{id, object: "event", created_at, type, data: {id}}``, and the signature Standard Webhooks'
(what the SDK's ``client.webhooks.unwrap()`` checks): ``webhook-id``, ``webhook-timestamp`` and
``webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">`` keyed by the base64 part
of the ``whsec_…`` secret.

A status change that causes an event writes one delivery row per subscribed endpoint in its own
transaction (the outbox, ``tunegate.store.queries.webhooks``); a worker sends them
(``tunegate.worker.webhook_delivery``), retrying with ``retry_delay`` until ``RETRY_FOR``.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import hmac
import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from tunegate.errors import InvalidRequest, clip

JOB_EVENTS: Mapping[str, str] = {  # a job's terminal status -> the event type it causes
    "succeeded": "fine_tuning.job.succeeded",
    "failed": "fine_tuning.job.failed",
    "cancelled": "fine_tuning.job.cancelled",
}
RUN_EVENTS: Mapping[str, str] = {  # an eval run's finished status -> its event type
    "completed": "eval.run.succeeded",
    "failed": "eval.run.failed",
    "canceled": "eval.run.canceled",
}
EVENT_TYPES = tuple(JOB_EVENTS.values()) + tuple(RUN_EVENTS.values())

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32
# Standard Webhooks' retries last days; OpenAI's stop after 72 hours.
RETRY_FOR = 72 * 3600
FIRST_RETRY = 5.0  # seconds before the second attempt; each later wait doubles
LONGEST_WAIT = 3600.0  # a wait never grows past an hour, so a receiver back up is found soon
# A rotation that keeps the old secret (the SDK's keep_old_secret_active_for_24_hours) signs with
# both for this long, so a receiver can be given the new one without missing a message.
ROTATION_OVERLAP = 24 * 3600


class DeliveryStatus(enum.StrEnum):
    PENDING = "pending"  # waiting for its next attempt (maybe its first)
    DELIVERED = "delivered"  # an attempt got a 2xx
    FAILED = "failed"  # given up: past RETRY_FOR, or its endpoint was disabled or removed


def new_secret() -> str:
    """A fresh signing secret in OpenAI's (and Standard Webhooks') form."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def secret_key(secret: str) -> bytes:
    """The HMAC key of a ``whsec_…`` secret: its base64 part, decoded (as the SDK reads it)."""
    return base64.b64decode(secret.removeprefix(SECRET_PREFIX))


def check_secret(secret: str) -> str:
    """``secret`` if it is ``whsec_`` and base64 of 24 bytes or more; ``InvalidRequest`` naming
    ``signing_secret`` otherwise."""
    problem = None
    if not secret.startswith(SECRET_PREFIX):
        problem = "does not start with whsec_"
    else:
        try:
            key = base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True)
        except (binascii.Error, ValueError):
            problem = "is not whsec_ followed by base64"
        else:
            if len(key) < 24:
                problem = f"holds {len(key)} bytes, fewer than 24"
    if problem:
        raise InvalidRequest(f"The signing secret {problem}: give whsec_ and the base64 of 24 "
                             "to 64 random bytes, or leave it out to get a new one.",
                             param="signing_secret", code="invalid_signing_secret")
    return secret


def secret_hint(secret: str) -> str:
    """What listings show of a secret: enough to tell two apart, not enough to sign."""
    return f"{SECRET_PREFIX}…{secret[-4:]}"


def sign(secret: str, message_id: str, timestamp: int, body: bytes, *,
         old_secret: str | None = None) -> dict[str, str]:
    """The Standard Webhooks headers of one attempt (the timestamp signed as sent). With
    ``old_secret`` (a rotation that kept it) the signature header holds two signatures,
    space-separated as the standard allows: a receiver with either secret verifies it."""
    signed = f"{message_id}.{timestamp}.".encode() + body
    signatures = [
        "v1," + base64.b64encode(hmac.new(secret_key(key), signed, hashlib.sha256).digest()
                                 ).decode()
        for key in (secret, old_secret) if key]
    return {"webhook-id": message_id, "webhook-timestamp": str(timestamp),
            "webhook-signature": " ".join(signatures)}


def event_body(event_id: str, event_type: str, object_id: str, created_at: int) -> str:
    """The payload OpenAI sends, as the exact text that is signed and sent on every attempt."""
    return json.dumps({"id": event_id, "object": "event", "created_at": created_at,
                       "type": event_type, "data": {"id": object_id}}, separators=(",", ":"))


def check_event_types(event_types: Any) -> list[str]:
    """The endpoint's event types, each once in the order given; ``InvalidRequest`` naming
    ``event_types`` for an empty list or a type tunegate never sends."""
    if not isinstance(event_types, list) or not event_types:
        raise InvalidRequest("Name one or more event types: " + ", ".join(EVENT_TYPES) + ".",
                             param="event_types", code="invalid_event_types")
    for name in event_types:
        if name not in EVENT_TYPES:
            raise InvalidRequest(f"Unknown event type {clip(str(name))!r}: tunegate sends "
                                 + ", ".join(EVENT_TYPES) + ".", param="event_types",
                                 code="invalid_event_types")
    return list(dict.fromkeys(event_types))


def retry_delay(attempts: int, first: float = FIRST_RETRY) -> float:
    """Seconds from the ``attempts``-th failed attempt to the next: ``first`` doubling, capped."""
    return min(first * 2 ** max(0, attempts - 1), LONGEST_WAIT)


def old_secret_at(previous_secret: str | None, until: int | None, when: float) -> str | None:
    """``previous_secret`` while ``when`` is before ``until``, else ``None``."""
    if previous_secret is None or until is None or when >= until:
        return None
    return previous_secret


@dataclass(frozen=True)
class EndpointChange:
    """What an update asks of an endpoint, each field checked; ``None`` keeps the field."""

    name: str | None = None
    url: str | None = None
    event_types: list[str] | None = None
    enabled: bool | None = None


@dataclass(frozen=True)
class WebhookEndpoint:
    id: str
    project_id: str
    created_at: int
    updated_at: int
    name: str
    url: str
    event_types: list[str]
    secret: str
    # Since when every attempt to it failed (None: its last attempt succeeded, or none yet);
    # when it was disabled for failing that long (None: enabled).
    failing_since: int | None = None
    disabled_at: int | None = None
    # The secret before a rotation that kept it, and until when it still signs.
    previous_secret: str | None = None
    previous_secret_until: int | None = None

    def old_secret_at(self, when: float) -> str | None:
        """The previous secret while it still signs beside the current one, else ``None``."""
        return old_secret_at(self.previous_secret, self.previous_secret_until, when)

    def changed(self, change: EndpointChange, at: int) -> WebhookEndpoint | None:
        """This endpoint with ``change`` applied at ``at`` (``updated_at`` moved); ``None`` when
        the change changes nothing. Enabling clears the failing streak: a receiver taken back
        gets the full ``disable_after`` again."""
        disabled_at = self.disabled_at
        failing_since = self.failing_since
        if change.enabled is True and disabled_at is not None:
            disabled_at = failing_since = None
        elif change.enabled is False and disabled_at is None:
            disabled_at = at
        updated = replace(
            self, name=self.name if change.name is None else change.name,
            url=self.url if change.url is None else change.url,
            event_types=self.event_types if change.event_types is None else change.event_types,
            disabled_at=disabled_at, failing_since=failing_since)
        return None if updated == self else replace(updated, updated_at=at)

    def rotated(self, secret: str, at: int, *, keep_old: bool) -> WebhookEndpoint:
        """This endpoint signing with ``secret`` from ``at``; with ``keep_old`` the current
        secret keeps signing beside it for ``ROTATION_OVERLAP`` seconds."""
        return replace(self, secret=secret, updated_at=at,
                       previous_secret=self.secret if keep_old else None,
                       previous_secret_until=at + ROTATION_OVERLAP if keep_old else None)

    def to_api(self, *, with_secret: bool = False) -> dict[str, Any]:
        """OpenAI's ``webhook_endpoint``; the secret itself only when created or rotated.
        ``status`` and ``disabled_at`` are tunegate's: an endpoint failing for days is
        disabled (docs/webhooks.md)."""
        shown: dict[str, Any] = {
            "object": "webhook_endpoint", "id": self.id, "name": self.name, "url": self.url,
            "event_types": self.event_types, "created_at": self.created_at,
            "updated_at": self.updated_at, "signing_secret_hint": secret_hint(self.secret),
            "status": "disabled" if self.disabled_at is not None else "enabled",
            "disabled_at": self.disabled_at}
        if with_secret:
            shown["signing_secret"] = self.secret
        return shown


@dataclass(frozen=True)
class Delivery:
    """One event on its way to one endpoint: the outbox row, and what its attempts got."""

    id: str  # the webhook-id, the same on every attempt (receivers de-duplicate by it)
    endpoint_id: str
    project_id: str
    event_id: str
    event_type: str
    object_id: str
    created_at: int
    body: str
    status: DeliveryStatus
    attempts: int
    next_attempt_at: float | None
    last_attempt_at: float | None
    last_status_code: int | None
    last_error: str | None

    def to_api(self) -> dict[str, Any]:
        return {"object": "webhook_delivery", "id": self.id, "endpoint_id": self.endpoint_id,
                "event_id": self.event_id, "event_type": self.event_type,
                "data_id": self.object_id, "created_at": self.created_at,
                "status": self.status.value, "attempts": self.attempts,
                "next_attempt_at": None if self.next_attempt_at is None or
                self.status != DeliveryStatus.PENDING else int(self.next_attempt_at),
                "last_attempt_at": None if self.last_attempt_at is None
                else int(self.last_attempt_at),
                "last_status_code": self.last_status_code, "last_error": self.last_error}
