"""``tunegate webhooks``' command line: the endpoint's URL and the server's (``--url``) stay
apart, and the default events are a job's three ends."""

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
