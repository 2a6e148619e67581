"""Webhook messages as the official SDK reads them, and where they may go: a signed body passes
``client.webhooks.unwrap()`` (and fails it with another secret or a changed body), secrets and
event types are checked with errors naming the field, an endpoint's changes and its rotated
secrets (two signatures while the old one is kept), and URLs to metadata, link-local,
loopback and private addresses are refused unless their network is allowed."""

from __future__ import annotations

import ipaddress
import time
from typing import Any

import pytest
from openai import InvalidWebhookSignatureError, OpenAI

from tunegate.domain.webhook_sender import check_url, parse_networks
from tunegate.domain.webhooks import (
    EVENT_TYPES,
    LONGEST_WAIT,
    ROTATION_OVERLAP,
    EndpointChange,
    WebhookEndpoint,
    check_event_types,
    check_secret,
    event_body,
    new_secret,
    retry_delay,
    sign,
)
from tunegate.errors import InvalidRequest


def sdk() -> OpenAI:
    return OpenAI(api_key="unused", base_url="http://127.0.0.1:9/v1")


@pytest.mark.parametrize("event_type", EVENT_TYPES)
def test_the_sdk_unwraps_every_event_tunegate_sends(event_type: str) -> None:
    secret = new_secret()
    body = event_body("evt_1", event_type, "ftjob-abc", 1_700_000_000)
    headers = sign(secret, "wh_1", int(time.time()), body.encode())
    event = sdk().webhooks.unwrap(body, headers, secret=secret)
    assert event.type == event_type and event.data.id == "ftjob-abc"
    assert event.id == "evt_1" and event.created_at == 1_700_000_000
    assert type(event).__name__.endswith("WebhookEvent")


def test_another_secret_or_a_changed_body_fails_verification() -> None:
    secret = new_secret()
    body = event_body("evt_1", "fine_tuning.job.failed", "ftjob-abc", 1)
    headers = sign(secret, "wh_1", int(time.time()), body.encode())
    with pytest.raises(InvalidWebhookSignatureError):
        sdk().webhooks.unwrap(body, headers, secret=new_secret())
    with pytest.raises(InvalidWebhookSignatureError):
        sdk().webhooks.unwrap(body.replace("abc", "abd"), headers, secret=secret)


@pytest.mark.parametrize("secret", ["abc", "whsec_not*base64", "whsec_AAAA"])
def test_a_secret_of_the_wrong_form_is_refused_naming_it(secret: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        check_secret(secret)
    assert caught.value.param == "signing_secret"
    assert check_secret(new_secret()).startswith("whsec_")


def test_unknown_or_missing_event_types_are_refused_naming_them() -> None:
    for wrong in ([], ["fine_tuning.job.canceled"], "fine_tuning.job.failed"):
        with pytest.raises(InvalidRequest) as caught:
            check_event_types(wrong)
        assert caught.value.param == "event_types"
    assert check_event_types(["eval.run.failed", "eval.run.failed"]) == ["eval.run.failed"]


@pytest.mark.parametrize("url", ["ftp://example.com/", "example.com/hook", "http:///path",
                                 "http://user:pw@example.com/", "http://[::1/"])
def test_malformed_urls_are_refused_naming_url(url: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        check_url(url, ())
    assert caught.value.param == "url" and caught.value.code == "invalid_url"


@pytest.mark.parametrize("url", ["http://169.254.169.254/latest/meta-data/",
                                 "http://[fd00:ec2::254]/", "http://127.0.0.1:8000/",
                                 "http://10.1.2.3/", "http://[::ffff:169.254.169.254]/",
                                 "http://0.0.0.0/", "http://localhost/"])
def test_addresses_off_the_public_internet_are_refused(url: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        check_url(url, ())
    assert caught.value.code == "webhook_url_refused"
    assert "TUNEGATE_WEBHOOK_ALLOW_NETWORKS" in caught.value.message


def test_an_allowed_network_is_reachable_on_purpose() -> None:
    allowed = parse_networks("127.0.0.1/32, 10.0.0.0/8")
    check_url("http://127.0.0.1:8000/hook", allowed)
    check_url("https://10.1.2.3/hook", allowed)
    check_url("http://93.184.215.14/hook", ())  # a public address needs nothing
    with pytest.raises(InvalidRequest):
        check_url("http://169.254.169.254/", allowed)
    assert parse_networks("") == ()
    assert parse_networks("192.168.1.7") == (ipaddress.ip_network("192.168.1.7/32"),)


def test_retry_waits_double_up_to_an_hour() -> None:
    assert [retry_delay(n, 5.0) for n in (1, 2, 3, 4)] == [5.0, 10.0, 20.0, 40.0]
    assert retry_delay(40, 5.0) == LONGEST_WAIT


def test_a_message_signed_with_an_old_secret_too_verifies_with_either_and_no_other() -> None:
    new, old = new_secret(), new_secret()
    body = event_body("evt_1", "fine_tuning.job.succeeded", "ftjob-abc", 1)
    headers = sign(new, "wh_1", int(time.time()), body.encode(), old_secret=old)
    assert len(headers["webhook-signature"].split(" ")) == 2
    for secret in (new, old):
        assert sdk().webhooks.unwrap(body, headers, secret=secret).data.id == "ftjob-abc"
    with pytest.raises(InvalidWebhookSignatureError):
        sdk().webhooks.unwrap(body, headers, secret=new_secret())
    assert " " not in sign(new, "wh_1", 1, b"{}")["webhook-signature"]


def endpoint(**fields: object) -> WebhookEndpoint:
    values: dict[str, Any] = {
        "id": "we_1", "project_id": "proj_1", "created_at": 100, "updated_at": 100,
        "name": "ci", "url": "https://93.184.215.14/x", "event_types": list(EVENT_TYPES[:1]),
        "secret": new_secret(), **fields}
    return WebhookEndpoint(**values)


def test_a_change_moves_updated_at_only_when_it_changes_something() -> None:
    before = endpoint()
    assert before.changed(EndpointChange(name="ci", url=before.url, enabled=True), 200) is None
    after = before.changed(EndpointChange(event_types=["eval.run.failed"]), 200)
    assert after is not None and after.event_types == ["eval.run.failed"]
    assert (after.updated_at, after.name, after.url) == (200, "ci", before.url)


def test_disabling_and_enabling_and_the_failing_streak() -> None:
    failing = endpoint(failing_since=50)
    off = failing.changed(EndpointChange(enabled=False), 200)
    assert off is not None and off.disabled_at == 200 and off.failing_since == 50
    assert off.changed(EndpointChange(enabled=False), 300) is None  # already off: kept as is
    on = off.changed(EndpointChange(enabled=True), 300)
    assert on is not None and on.disabled_at is None and on.failing_since is None
    assert on.to_api()["status"] == "enabled" and off.to_api()["status"] == "disabled"


def test_an_old_secret_signs_only_until_its_time() -> None:
    kept = endpoint(previous_secret="whsec_old", previous_secret_until=1000)
    assert kept.old_secret_at(999.5) == "whsec_old"
    assert kept.old_secret_at(1000) is None
    assert endpoint().old_secret_at(0) is None


def test_a_rotation_keeps_the_old_secret_for_the_overlap_only_when_asked() -> None:
    before = endpoint()
    kept = before.rotated("whsec_new", 200, keep_old=True)
    assert (kept.secret, kept.updated_at) == ("whsec_new", 200)
    assert (kept.previous_secret, kept.previous_secret_until) == (before.secret,
                                                                  200 + ROTATION_OVERLAP)
    dropped = before.rotated("whsec_new", 200, keep_old=False)
    assert (dropped.previous_secret, dropped.previous_secret_until) == (None, None)
    assert dropped.old_secret_at(200) is None
