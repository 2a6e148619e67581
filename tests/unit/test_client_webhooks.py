"""``tunegate webhooks``' command line: the endpoint's URL and the server's (``--url``) stay
apart, the default events are a job's three ends, and update and rotate-secret take their
options."""

from __future__ import annotations

import pytest

from tunegate.cli import _parser


def test_the_endpoint_url_and_the_server_url_stay_apart() -> None:
    args = _parser().parse_args(["webhooks", "add", "https://hooks.example.com/x",
                                 "--url", "http://127.0.0.1:8000"])
    assert args.endpoint_url == "https://hooks.example.com/x"
    assert args.url == "http://127.0.0.1:8000"
    assert args.events == ["fine_tuning.job.succeeded", "fine_tuning.job.failed",
                           "fine_tuning.job.cancelled"]


def test_an_unknown_event_type_is_refused_by_name(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        _parser().parse_args(["webhooks", "add", "https://h/x", "--events", "job.done"])
    assert "job.done" in capsys.readouterr().err


def test_update_takes_the_fields_to_change_and_one_status() -> None:
    args = _parser().parse_args(["webhooks", "update", "we_1", "--endpoint-url", "https://h/y",
                                 "--events", "eval.run.failed", "--disable"])
    assert (args.endpoint_id, args.endpoint_url, args.events, args.status, args.name) == (
        "we_1", "https://h/y", ["eval.run.failed"], "disabled", None)
    assert _parser().parse_args(["webhooks", "update", "we_1", "--enable"]).status == "enabled"
    with pytest.raises(SystemExit):
        _parser().parse_args(["webhooks", "update", "we_1", "--enable", "--disable"])


def test_rotate_secret_keeps_the_old_one_only_when_asked() -> None:
    assert not _parser().parse_args(["webhooks", "rotate-secret", "we_1"]).keep_old
    assert _parser().parse_args(["webhooks", "rotate-secret", "we_1", "--keep-old"]).keep_old
