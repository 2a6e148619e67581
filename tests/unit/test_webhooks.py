"""Webhook messages as the official SDK reads them, and where they may go: a signed body passes
``client.webhooks.unwrap()`` (and fails it with another secret or a changed body), secrets and
event types are checked with errors naming the field, and URLs to metadata, link-local,
loopback and private addresses are refused unless their network is allowed."""

from __future__ import annotations

import ipaddress
import time

import pytest
from openai import InvalidWebhookSignatureError, OpenAI

from tunegate.domain.webhook_sender import check_url, parse_networks
from tunegate.domain.webhooks import (
    EVENT_TYPES,
    LONGEST_WAIT,
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
