"""The webhook endpoints use cases (``/v1/webhook_endpoints``, the paths and shapes of the
SDK's ``client.webhooks.create/list/retrieve/update/delete/rotate_secret/test``): a project's
receivers, each with the event types it wants and its ``whsec_…`` signing secret, shown once,
when it is made or rotated; and (tunegate's own) the deliveries of an endpoint, with what their
attempts got."""

from __future__ import annotations

from typing import Any

from tunegate import ids
from tunegate.domain.jobs import now
from tunegate.domain.webhook_sender import check_url, parse_networks, send
from tunegate.domain.webhooks import (
    Delivery,
    EndpointChange,
    WebhookEndpoint,
    check_event_types,
    check_secret,
    event_body,
    new_secret,
)
from tunegate.errors import InvalidRequest, NotFound, clip
from tunegate.settings import Settings
from tunegate.store.base import Page, Store

# The object a test event names: made up, as OpenAI's test events' are.
TEST_OBJECT = {"fine_tuning": "ftjob-test", "eval": "evalrun_test"}


class Webhooks:
    def __init__(self, settings: Settings, store: Store):
        self.settings = settings
        self.store = store
        self.allowed = parse_networks(settings.webhook_allow_networks)

    def create(self, project_id: str, body: dict[str, Any]) -> WebhookEndpoint:
        url = body["url"]
        event_types = check_event_types(body.get("event_types"))
        secret = body.get("signing_secret")
        secret = new_secret() if secret is None else check_secret(secret)
        check_url(url, self.allowed)  # last: it may ask DNS
        made = now()
        endpoint = WebhookEndpoint(
            id=ids.new_id(ids.WEBHOOK_ENDPOINT), project_id=project_id, created_at=made,
            updated_at=made, name=body.get("name") or url, url=url, event_types=event_types,
            secret=secret)
        self.store.add_webhook_endpoint(endpoint)
        return endpoint

    def get(self, project_id: str | None, endpoint_id: str) -> WebhookEndpoint:
        endpoint = self.store.get_webhook_endpoint(project_id, endpoint_id)
        if endpoint is None:
            raise NotFound(f"No such webhook endpoint: {clip(endpoint_id)}",
                           param="webhook_endpoint_id", code="webhook_endpoint_not_found")
        return endpoint

    def list(self, project_id: str | None, *, after: str | None,
             limit: int) -> Page[WebhookEndpoint]:
        return self.store.list_webhook_endpoints(project_id, after=after, limit=limit)

    def delete(self, project_id: str | None, endpoint_id: str) -> dict[str, Any]:
        if not self.store.delete_webhook_endpoint(project_id, endpoint_id):
            self.get(project_id, endpoint_id)  # raises the 404
        return {"object": "webhook_endpoint.deleted", "id": endpoint_id, "deleted": True}

    def update(self, project_id: str | None, endpoint_id: str,
               body: dict[str, Any]) -> WebhookEndpoint:
        """Change the fields ``body`` names (each checked as on creation); the endpoint as it
        is now. An update that changes nothing writes nothing (``updated_at`` stays)."""
        endpoint = self.get(project_id, endpoint_id)
        event_types = body.get("event_types")
        change = EndpointChange(
            name=body.get("name"), url=body.get("url"),
            event_types=None if event_types is None else check_event_types(event_types),
            enabled=None if body.get("status") is None else body["status"] == "enabled")
        if change.url is not None and change.url != endpoint.url:
            check_url(change.url, self.allowed)  # last: it may ask DNS
        updated = endpoint.changed(change, now())
        if updated is None:
            return endpoint
        if not self.store.update_webhook_endpoint(endpoint, updated):
            self.get(project_id, endpoint_id)  # removed meanwhile: the 404
        return updated

    def rotate_secret(self, project_id: str | None, endpoint_id: str, *,
                      keep_old: bool) -> WebhookEndpoint:
        """Give the endpoint a new secret (returned, to be shown once); with ``keep_old`` the
        current one keeps signing beside it for ``ROTATION_OVERLAP`` seconds."""
        rotated = self.get(project_id, endpoint_id).rotated(new_secret(), now(), keep_old=keep_old)
        if not self.store.rotate_webhook_secret(rotated):
            self.get(project_id, endpoint_id)  # removed meanwhile: the 404
        return rotated

    def deliveries(self, project_id: str | None, endpoint_id: str, *, after: str | None,
                   limit: int) -> Page[Delivery]:
        self.get(project_id, endpoint_id)
        return self.store.list_webhook_deliveries(endpoint_id, after=after, limit=limit)

    def test(self, project_id: str | None, endpoint_id: str,
             event_type: str) -> dict[str, Any]:
        """Send one sample event now (not through the outbox: nothing retries it) and answer
        what the endpoint answered; no answer at all is a 400 saying why."""
        endpoint = self.get(project_id, endpoint_id)
        check_event_types([event_type])
        body = event_body(ids.new_id(ids.WEBHOOK_EVENT), event_type,
                          TEST_OBJECT[event_type.split(".")[0]], now())
        attempt = send(endpoint.url, endpoint.secret, ids.new_id(ids.WEBHOOK_MESSAGE), body,
                       timeout=self.settings.webhook_timeout, allowed=self.allowed,
                       old_secret=endpoint.old_secret_at(now()))
        if attempt.status_code is None:
            raise InvalidRequest(f"The test event did not reach {clip(endpoint.url)}: "
                                 f"{attempt.error}", param="webhook_endpoint_id",
                                 code="webhook_unreachable")
        return {"object": "webhook_endpoint.test", "webhook_endpoint_id": endpoint.id,
                "event_type": event_type, "status_code": attempt.status_code, "success": True}
