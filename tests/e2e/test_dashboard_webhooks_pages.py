"""The dashboard's Webhooks view in a real headless Chromium, fed by a fake API
(``FakeWebhookApi``: endpoints and their deliveries as the test sets them; what the page adds
or changes is recorded and answered as the API would): each endpoint with its events, its
newest delivery and its next try; adding one shows its secret this once; a refused URL shows
the server's message; Disable/Enable; Rotate secret asks first, then shows the new secret once;
Remove asks first and removes; an endpoint's deliveries on demand.

No server: every state is set, not waited for (tests/e2e/test_webhooks_sdk.py drives the same
view against a real server and a real receiver). Screenshots go to
``<basetemp>/artifacts/dashboard-webhooks-*.png``.

Never ``playwright install``: it downloads browsers. Without ``/usr/bin/chromium``
(``make system-packages`` installs it) these tests are skipped.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.e2e.test_dashboard_pages import DashboardTab, fulfill_json, list_page
from tunegate.api.dashboard import ASSETS, MEDIA_TYPES

pytestmark = pytest.mark.e2e

FAILING = "we_0DashboardHooksFailing0000"
QUIET = "we_0DashboardHooksQuiet000000"
NEW_SECRET = "whsec_" + "A" * 43 + "="
ROTATED_SECRET = "whsec_" + "B" * 43 + "="
NOW = int(time.time())
JOB_ENDS = ["fine_tuning.job.succeeded", "fine_tuning.job.failed", "fine_tuning.job.cancelled"]


def endpoint(endpoint_id: str, url: str, event_types: list[str], *, name: str = "",
             status: str = "enabled") -> dict[str, Any]:
    return {"object": "webhook_endpoint", "id": endpoint_id, "name": name or url, "url": url,
            "event_types": event_types, "created_at": NOW - 3600, "updated_at": NOW - 3600,
            "signing_secret_hint": "whsec_…" + endpoint_id[-4:], "status": status,
            "disabled_at": None}


def delivery(delivery_id: str, endpoint_id: str, status: str, *, attempts: int,
             code: int | None = None, error: str | None = None,
             next_at: int | None = None) -> dict[str, Any]:
    return {"object": "webhook_delivery", "id": delivery_id, "endpoint_id": endpoint_id,
            "event_id": "evt_" + delivery_id[3:], "event_type": "fine_tuning.job.succeeded",
            "data_id": "ftjob-0DashboardHooksJob00000", "created_at": NOW - 600,
            "status": status, "attempts": attempts, "next_attempt_at": next_at,
            "last_attempt_at": NOW - 60 if attempts else None, "last_status_code": code,
            "last_error": error}


class FakeWebhookApi:
    """Answers the dashboard's requests: its files, ``endpoints`` (newest first) and each one's
    ``deliveries``; records what the page sends (``sent``: (method, path, body)) and answers a
    new endpoint with ``NEW_SECRET``, or a 400 naming ``url`` for a metadata address."""

    def __init__(self) -> None:
        self.endpoints: list[dict[str, Any]] = []
        self.deliveries: dict[str, list[dict[str, Any]]] = {}
        self.sent: list[tuple[str, str, Any]] = []

    def __call__(self, route: Any) -> None:
        request = route.request
        path = urlsplit(request.url).path
        parts = path.removeprefix("/v1/").split("/")
        if path.startswith("/dashboard/"):
            file = ASSETS / (path.removeprefix("/dashboard/") or "index.html")
            route.fulfill(status=200, body=file.read_bytes(), content_type=MEDIA_TYPES[file.suffix])
        elif request.method == "POST" and parts == ["webhook_endpoints"]:
            self._add(route, json.loads(request.post_data))
        elif request.method == "POST":
            self._change(route, path, parts, json.loads(request.post_data or "null"))
        elif request.method == "DELETE" and len(parts) == 2:
            self.sent.append(("DELETE", path, None))
            self.endpoints = [e for e in self.endpoints if e["id"] != parts[1]]
            fulfill_json(route, {"object": "webhook_endpoint.deleted", "id": parts[1],
                               "deleted": True})
        elif parts == ["webhook_endpoints"]:
            fulfill_json(route, list_page(self.endpoints))
        elif len(parts) == 3 and parts[2] == "deliveries":
            fulfill_json(route, list_page(self.deliveries.get(parts[1], [])))
        else:
            fulfill_json(route, _error(f"No route {path}", None, "not_found"), status=404)

    def _add(self, route: Any, body: dict[str, Any]) -> None:
        self.sent.append(("POST", "/v1/webhook_endpoints", body))
        if "169.254." in body["url"]:
            fulfill_json(route, _error(
                f"Webhooks to {body['url']} are refused: 169.254.169.254 is a cloud metadata "
                "address (setting TUNEGATE_WEBHOOK_ALLOW_NETWORKS)", "url",
                "webhook_url_refused"), status=400)
            return
        made = endpoint("we_0DashboardHooksAdded00000", body["url"], body["event_types"],
                        name=body.get("name", ""))
        self.endpoints.insert(0, made)
        fulfill_json(route, {**made, "signing_secret": NEW_SECRET})

    def _change(self, route: Any, path: str, parts: list[str], body: Any) -> None:
        """An update (its ``status``) or a rotation (``ROTATED_SECRET``)."""
        self.sent.append(("POST", path, body))
        [found] = [e for e in self.endpoints if e["id"] == parts[1]]
        if parts[-1] == "rotate_secret":
            found["signing_secret_hint"] = "whsec_…" + ROTATED_SECRET[-4:]
            fulfill_json(route, {**found, "signing_secret": ROTATED_SECRET})
        else:
            found.update(body)
            fulfill_json(route, found)


def _error(message: str, param: str | None, code: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": "invalid_request_error", "param": param,
                      "code": code}}


class Tab(DashboardTab):
    def open(self) -> Any:
        return self.goto("#/webhooks")


@pytest.fixture
def api() -> FakeWebhookApi:
    fake = FakeWebhookApi()
    fake.endpoints = [
        endpoint(FAILING, "http://receiver.test/hook", JOB_ENDS, name="ci"),
        endpoint(QUIET, "http://other.test/evals", ["eval.run.succeeded"], status="disabled")]
    fake.deliveries[FAILING] = [
        delivery("wh_0DashboardHooksNewest000", FAILING, "pending", attempts=3,
                 error="ConnectError: [Errno 111] Connection refused", next_at=NOW + 40),
        delivery("wh_0DashboardHooksOlder0000", FAILING, "pending", attempts=4, code=503,
                 error="HTTP 503: busy", next_at=NOW + 20),
        delivery("wh_0DashboardHooksFirst0000", FAILING, "delivered", attempts=1, code=200)]
    return fake


@pytest.fixture
def tab(browser: Any, api: FakeWebhookApi) -> Iterator[Tab]:
    opened = Tab(browser, api)
    yield opened
    opened.close()


def test_each_endpoint_shows_its_events_last_delivery_and_next_try(
        tab: Tab, artifacts: Path) -> None:
    page = tab.open()
    failing = page.locator(f"tr[data-endpoint-id={FAILING}]")
    failing.locator("td.last-delivery .status").wait_for()
    assert page.locator("header nav a.current").inner_text() == "Webhooks"
    assert page.title() == "webhooks · tunegate"
    text = failing.inner_text()
    assert "ci" in text and "http://receiver.test/hook" in text and "whsec_…0000" in text
    assert failing.locator("td.event-types div").all_inner_texts() == JOB_ENDS
    last = failing.locator("td.last-delivery").inner_text()
    assert "pending" in last and "Connection refused" in last  # the newest delivery's
    # The next try is the earliest of the pending deliveries' (the older one's, in 20 s).
    assert failing.locator("td.next-try").inner_text() == page.evaluate(
        f"() => new Date({(NOW + 20) * 1000}).toLocaleString()")
    quiet = page.locator(f"tr[data-endpoint-id={QUIET}]")
    assert quiet.get_attribute("data-status") == "disabled"
    assert "none yet" in quiet.locator("td.last-delivery").inner_text()
    assert quiet.locator("td.next-try").inner_text() == "–"
    page.screenshot(path=str(artifacts / "dashboard-webhooks-list.png"), full_page=True)

    failing.locator("button.show-deliveries").click()
    rows = page.locator(f"section.deliveries[data-endpoint-id={FAILING}] tbody tr")
    rows.first.wait_for()
    assert rows.count() == 3
    older = page.locator("tr[data-delivery-id=wh_0DashboardHooksOlder0000]").inner_text()
    assert "HTTP 503" in older and "4" in older
    assert page.locator("tr[data-delivery-id=wh_0DashboardHooksFirst0000]").get_attribute(
        "data-status") == "delivered"


def test_adding_an_endpoint_shows_its_secret_once(tab: Tab, api: FakeWebhookApi,
                                                  artifacts: Path) -> None:
    page = tab.open()
    page.locator(f"tr[data-endpoint-id={FAILING}]").wait_for()
    page.fill("input[name=url]", "https://hooks.example.test/new")
    page.fill("input[name=name]", "deploys")
    page.uncheck("input[value='fine_tuning.job.cancelled']")
    page.check("input[value='eval.run.failed']")
    page.click("form.add-endpoint button[type=submit]")
    notice = page.locator(".secret-notice")
    notice.wait_for()
    assert notice.locator(".signing-secret").inner_text() == NEW_SECRET
    assert "shown this once" in notice.inner_text()
    [(method, path, body)] = api.sent
    assert (method, path) == ("POST", "/v1/webhook_endpoints")
    assert body == {"url": "https://hooks.example.test/new", "name": "deploys",
                    "event_types": ["fine_tuning.job.succeeded", "fine_tuning.job.failed",
                                    "eval.run.failed"]}
    added = page.locator("tr[data-endpoint-id=we_0DashboardHooksAdded00000]")
    added.wait_for()
    assert "deploys" in added.inner_text() and NEW_SECRET not in added.inner_text()
    assert page.input_value("input[name=url]") == ""  # the form is ready for the next one
    page.screenshot(path=str(artifacts / "dashboard-webhooks-secret.png"), full_page=True)

    page.click("button.forget-secret")
    assert page.locator(".secret-notice").count() == 0
    assert NEW_SECRET not in page.content()
    page.click("header nav a[data-section=jobs]")
    page.click("header nav a[data-section=webhooks]")
    added.wait_for()
    assert NEW_SECRET not in page.content()  # listings show only the hint


def test_a_refused_url_shows_the_servers_message(tab: Tab, api: FakeWebhookApi) -> None:
    page = tab.open()
    page.fill("input[name=url]", "http://169.254.169.254/latest/")
    page.click("form.add-endpoint button[type=submit]")
    error = page.locator("form.add-endpoint .error")
    error.wait_for()
    assert "cloud metadata" in error.inner_text()
    assert "TUNEGATE_WEBHOOK_ALLOW_NETWORKS" in error.inner_text()
    assert page.locator(".secret-notice").count() == 0


def test_remove_asks_first_then_removes(tab: Tab, api: FakeWebhookApi) -> None:
    page = tab.open()
    row = page.locator(f"tr[data-endpoint-id={FAILING}]")
    row.wait_for()
    page.once("dialog", lambda dialog: dialog.dismiss())
    row.locator("button.remove-endpoint").click()
    page.wait_for_timeout(300)
    assert api.sent == [] and row.count() == 1  # said no: nothing removed
    page.once("dialog", lambda dialog: dialog.accept())
    row.locator("button.remove-endpoint").click()
    row.wait_for(state="detached")
    assert api.sent == [("DELETE", f"/v1/webhook_endpoints/{FAILING}", None)]
    assert page.locator(f"tr[data-endpoint-id={QUIET}]").count() == 1


def test_disable_enable_and_rotate_from_the_list(tab: Tab, api: FakeWebhookApi) -> None:
    page = tab.open()
    failing = page.locator(f"tr[data-endpoint-id={FAILING}]")
    failing.wait_for()
    failing.locator("button.toggle-endpoint").click()
    page.locator(f"tr[data-endpoint-id={FAILING}][data-status=disabled]").wait_for()
    quiet = page.locator(f"tr[data-endpoint-id={QUIET}]")
    assert quiet.locator("button.toggle-endpoint").inner_text() == "Enable"
    quiet.locator("button.toggle-endpoint").click()
    page.locator(f"tr[data-endpoint-id={QUIET}][data-status=enabled]").wait_for()
    assert api.sent == [("POST", f"/v1/webhook_endpoints/{FAILING}", {"status": "disabled"}),
                        ("POST", f"/v1/webhook_endpoints/{QUIET}", {"status": "enabled"})]

    page.once("dialog", lambda dialog: dialog.dismiss())
    failing.locator("button.rotate-secret").click()
    page.wait_for_timeout(300)
    assert len(api.sent) == 2  # said no: not rotated
    page.once("dialog", lambda dialog: dialog.accept())
    failing.locator("button.rotate-secret").click()
    notice = page.locator(f".secret-notice[data-endpoint-id={FAILING}]")
    notice.wait_for()
    assert notice.locator(".signing-secret").inner_text() == ROTATED_SECRET
    assert "24 hours" in notice.inner_text()
    assert api.sent[-1] == ("POST", f"/v1/webhook_endpoints/{FAILING}/rotate_secret",
                            {"keep_old_secret_active_for_24_hours": True})
    page.wait_for_function(
        f"() => document.querySelector('tr[data-endpoint-id={FAILING}]')"
        f".innerText.includes('{ROTATED_SECRET[-4:]}')")  # the list shows the new hint
