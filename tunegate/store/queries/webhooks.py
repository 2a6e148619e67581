"""The store's webhooks: each project's endpoints, and the outbox of their deliveries.

``enqueue_event`` is called inside the transaction that writes a job's or an eval run's status
(``JobQueries._transition``, ``SqlEvals.cancel_run`` / ``finish_run``): the event exists exactly
when the status change does, whatever process dies when. A worker then claims a due delivery by
compare-and-set on its ``next_attempt_at`` (moved a lease ahead, so a worker killed in the middle
of an attempt leaves it due again after the lease) and records each attempt's outcome.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.engine import Connection, Row

from tunegate import ids
from tunegate.domain.webhooks import (
    Delivery,
    DeliveryStatus,
    WebhookEndpoint,
    event_body,
    old_secret_at,
    retry_delay,
)
from tunegate.store import schema
from tunegate.store.base import Page
from tunegate.store.queries.common import SqlQueries, in_project


def as_endpoint(row: Row[Any]) -> WebhookEndpoint:
    return WebhookEndpoint(id=row.id, project_id=row.project_id, created_at=row.created_at,
                           updated_at=row.updated_at, name=row.name, url=row.url,
                           event_types=list(row.event_types), secret=row.secret,
                           failing_since=row.failing_since, disabled_at=row.disabled_at,
                           previous_secret=row.previous_secret,
                           previous_secret_until=row.previous_secret_until)


def as_delivery(row: Row[Any]) -> Delivery:
    return Delivery(id=row.id, endpoint_id=row.endpoint_id, project_id=row.project_id,
                    event_id=row.event_id, event_type=row.event_type, object_id=row.object_id,
                    created_at=row.created_at, body=row.body, status=DeliveryStatus(row.status),
                    attempts=row.attempts, next_attempt_at=row.next_attempt_at,
                    last_attempt_at=row.last_attempt_at, last_status_code=row.last_status_code,
                    last_error=row.last_error)


def enqueue_event(connection: Connection, project_id: str, event_type: str, object_id: str,
                  at: int) -> int:
    """Inside the caller's transaction: one delivery of a new event to each enabled endpoint
    of the project subscribed to ``event_type``, due now; how many."""
    endpoints = schema.webhook_endpoints
    subscribed = [row for row in connection.execute(select(endpoints).where(
        endpoints.c.project_id == project_id, endpoints.c.disabled_at.is_(None)))
        if event_type in row.event_types]
    if not subscribed:
        return 0
    event_id = ids.new_id(ids.WEBHOOK_EVENT)
    body = event_body(event_id, event_type, object_id, at)
    connection.execute(insert(schema.webhook_deliveries), [
        {"id": ids.new_id(ids.WEBHOOK_MESSAGE), "endpoint_id": row.id, "project_id": project_id,
         "event_id": event_id, "event_type": event_type, "object_id": object_id,
         "created_at": at, "body": body, "status": DeliveryStatus.PENDING.value, "attempts": 0,
         "next_attempt_at": float(at), "last_attempt_at": None, "last_status_code": None,
         "last_error": None} for row in subscribed])
    return len(subscribed)


@dataclass(frozen=True)
class DueDelivery:
    delivery: Delivery
    url: str
    secret: str
    old_secret: str | None = None  # signs too while a rotation that kept it lasts


@dataclass(frozen=True)
class Outcome:
    """What recording an attempt did: the delivery as it is now, and whether this attempt
    disabled its endpoint (the worker warns)."""

    delivery: Delivery
    disabled_endpoint: bool


class WebhookQueries(SqlQueries):
    """``Store``'s webhook endpoints and deliveries."""

    # Endpoints ------------------------------------------------------------------------------

    def add_webhook_endpoint(self, endpoint: WebhookEndpoint) -> None:
        with self.engine.begin() as connection:
            connection.execute(insert(schema.webhook_endpoints).values(
                id=endpoint.id, project_id=endpoint.project_id, created_at=endpoint.created_at,
                updated_at=endpoint.updated_at, name=endpoint.name, url=endpoint.url,
                event_types=endpoint.event_types, secret=endpoint.secret,
                failing_since=None, disabled_at=None, previous_secret=None,
                previous_secret_until=None))

    def update_webhook_endpoint(self, before: WebhookEndpoint, after: WebhookEndpoint) -> bool:
        """Write ``after``'s settings (name, URL, event types, whether disabled) over ``before``'s;
        disabling it gives up its waiting deliveries in the same transaction. Its failing
        streak is written only when enabling clears it (the worker keeps it meanwhile).
        ``False`` when the endpoint is gone."""
        table, deliveries = schema.webhook_endpoints, schema.webhook_deliveries
        values: dict[str, Any] = {"name": after.name, "url": after.url,
                                  "event_types": after.event_types,
                                  "updated_at": after.updated_at, "disabled_at": after.disabled_at}
        if before.disabled_at is not None and after.disabled_at is None:
            values["failing_since"] = None
        with self.engine.begin() as connection:
            found = connection.execute(update(table).where(table.c.id == before.id)
                                       .values(**values))
            if found.rowcount != 1:
                return False
            if before.disabled_at is None and after.disabled_at is not None:
                connection.execute(update(deliveries).where(
                    deliveries.c.endpoint_id == before.id,
                    deliveries.c.status == DeliveryStatus.PENDING.value)
                    .values(status=DeliveryStatus.FAILED.value, next_attempt_at=None,
                            last_error="endpoint disabled by an update"))
        return True

    def rotate_webhook_secret(self, endpoint: WebhookEndpoint) -> bool:
        """Write ``endpoint``'s secrets (new, previous and until when) and ``updated_at``;
        ``False`` when it is gone."""
        table = schema.webhook_endpoints
        with self.engine.begin() as connection:
            found = connection.execute(update(table).where(table.c.id == endpoint.id).values(
                secret=endpoint.secret, previous_secret=endpoint.previous_secret,
                previous_secret_until=endpoint.previous_secret_until,
                updated_at=endpoint.updated_at))
        return found.rowcount == 1

    def get_webhook_endpoint(self, project_id: str | None,
                             endpoint_id: str) -> WebhookEndpoint | None:
        table = schema.webhook_endpoints
        rows = self._read(select(table).where(table.c.id == endpoint_id,
                                              in_project(table, project_id)), {})
        return as_endpoint(rows[0]) if rows else None

    def list_webhook_endpoints(self, project_id: str | None, *, after: str | None,
                               limit: int) -> Page[WebhookEndpoint]:
        """Newest first."""
        table = schema.webhook_endpoints
        query = select(table).where(in_project(table, project_id))
        if after is not None:
            query = query.where(table.c.id < after)
        rows = self._read(query.order_by(table.c.id.desc()).limit(limit + 1), {})
        return Page([as_endpoint(row) for row in rows[:limit]], len(rows) > limit)

    def delete_webhook_endpoint(self, project_id: str | None, endpoint_id: str) -> bool:
        """Remove the endpoint with its deliveries (pending ones are not sent)."""
        table = schema.webhook_endpoints
        with self.engine.begin() as connection:
            found = connection.execute(delete(table).where(
                table.c.id == endpoint_id, in_project(table, project_id)))
            if found.rowcount != 1:
                return False
            connection.execute(delete(schema.webhook_deliveries).where(
                schema.webhook_deliveries.c.endpoint_id == endpoint_id))
        return True

    # Deliveries -----------------------------------------------------------------------------

    def list_webhook_deliveries(self, endpoint_id: str, *, after: str | None,
                                limit: int) -> Page[Delivery]:
        """An endpoint's deliveries, newest first (the caller checked the endpoint's project)."""
        table = schema.webhook_deliveries
        query = select(table).where(table.c.endpoint_id == endpoint_id)
        if after is not None:
            query = query.where(table.c.id < after)
        rows = self._read(query.order_by(table.c.id.desc()).limit(limit + 1), {})
        return Page([as_delivery(row) for row in rows[:limit]], len(rows) > limit)

    def due_webhook_deliveries(self, now: float, *, limit: int,
                               skip_endpoints: Sequence[str] = ()) -> list[DueDelivery]:
        """Pending deliveries due by ``now``, oldest first, with where and how to send them;
        none of ``skip_endpoints`` (those busy with an attempt)."""
        deliveries, endpoints = schema.webhook_deliveries, schema.webhook_endpoints
        query = (select(deliveries, endpoints.c.url, endpoints.c.secret,
                        endpoints.c.previous_secret, endpoints.c.previous_secret_until)
                 .join(endpoints, endpoints.c.id == deliveries.c.endpoint_id)
                 .where(deliveries.c.status == DeliveryStatus.PENDING.value,
                        deliveries.c.next_attempt_at <= now,
                        endpoints.c.disabled_at.is_(None)))
        if skip_endpoints:
            query = query.where(deliveries.c.endpoint_id.not_in(list(skip_endpoints)))
        rows = self._read(query.order_by(deliveries.c.next_attempt_at, deliveries.c.id)
                          .limit(limit), {})
        return [DueDelivery(as_delivery(row), row.url, row.secret,
                            old_secret_at(row.previous_secret, row.previous_secret_until, now))
                for row in rows]

    def claim_webhook_delivery(self, delivery: Delivery, until: float) -> bool:
        """Hold ``delivery`` for one attempt until ``until`` (compare-and-set on the due time
        it was read with): ``False`` when another worker took it first."""
        table = schema.webhook_deliveries
        with self.engine.begin() as connection:
            result = connection.execute(update(table).where(
                table.c.id == delivery.id, table.c.status == DeliveryStatus.PENDING.value,
                table.c.next_attempt_at == delivery.next_attempt_at)
                .values(next_attempt_at=until))
        return result.rowcount == 1

    def record_webhook_attempt(self, delivery_id: str, *, status_code: int | None,
                               error: str | None, now: float, first_retry: float,
                               retry_for: float, disable_after: float) -> Outcome | None:
        """Record one attempt: delivered on a 2xx; otherwise retried after ``retry_delay``,
        given up ``retry_for`` seconds after the event, and the endpoint disabled (its pending
        deliveries failed with it) once it has failed for ``disable_after`` seconds without a
        success. ``None`` when the delivery is gone (its endpoint was removed)."""
        deliveries, endpoints = schema.webhook_deliveries, schema.webhook_endpoints
        delivered = status_code is not None and 200 <= status_code < 300
        with self.engine.begin() as connection:
            row = connection.execute(select(deliveries).where(
                deliveries.c.id == delivery_id)).first()
            if row is None:
                return None
            endpoint = connection.execute(select(endpoints).where(
                endpoints.c.id == row.endpoint_id)).one()
            attempts = row.attempts + 1
            values: dict[str, Any] = {"attempts": attempts, "last_attempt_at": now,
                                      "last_status_code": status_code, "last_error": error}
            disabled = False
            if delivered:
                values.update(status=DeliveryStatus.DELIVERED.value, next_attempt_at=None)
                connection.execute(update(endpoints).where(endpoints.c.id == endpoint.id)
                                   .values(failing_since=None))
            else:
                failing_since = endpoint.failing_since or int(now)
                if now - failing_since >= disable_after and endpoint.disabled_at is None:
                    disabled = True
                    connection.execute(update(endpoints).where(endpoints.c.id == endpoint.id)
                                       .values(failing_since=failing_since, disabled_at=int(now)))
                    connection.execute(update(deliveries).where(
                        deliveries.c.endpoint_id == endpoint.id, deliveries.c.id != delivery_id,
                        deliveries.c.status == DeliveryStatus.PENDING.value)
                        .values(status=DeliveryStatus.FAILED.value, next_attempt_at=None,
                                last_error="endpoint disabled after failing for "
                                           f"{disable_after / 3600:g} hours"))
                elif endpoint.failing_since is None:
                    connection.execute(update(endpoints).where(endpoints.c.id == endpoint.id)
                                       .values(failing_since=failing_since))
                next_at = now + retry_delay(attempts, first_retry)
                if disabled or next_at - row.created_at > retry_for:
                    values.update(status=DeliveryStatus.FAILED.value, next_attempt_at=None)
                else:
                    values.update(next_attempt_at=next_at)
            connection.execute(update(deliveries).where(deliveries.c.id == delivery_id)
                               .values(**values))
            updated = connection.execute(select(deliveries).where(
                deliveries.c.id == delivery_id)).one()
            return Outcome(as_delivery(updated), disabled)

    def webhook_delivery_counts(self) -> dict[str, int]:
        """How many deliveries are in each status (every project)."""
        table = schema.webhook_deliveries
        rows = self._read(select(table.c.status, func.count().label("n"))
                          .group_by(table.c.status), {})
        return {row.status: int(row.n) for row in rows}
