"""Structured logs: with ``TUNEGATE_LOG_FORMAT=json`` every line is one JSON object (time, level,
logger, message), a request's lines carry the ``x-request-id`` its client saw, and a job's
worker lines its ``job_id``."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from tests.helpers import create_job, upload
from tunegate import logs
from tunegate.api.server import log_config, uvicorn_options
from tunegate.settings import Settings


@pytest.fixture
def json_lines() -> Iterator[io.StringIO]:
    """The root logger configured as ``serve`` configures it for JSON, into a buffer."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level, logging.getLogger(logs.ACCESS_LOGGER).level
    logs.configure("json")
    buffer = io.StringIO()
    root.handlers[0].setStream(buffer)  # type: ignore[attr-defined]
    yield buffer
    root.handlers[:], level, access = saved
    root.setLevel(level)
    logging.getLogger(logs.ACCESS_LOGGER).setLevel(access)


def lines(buffer: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in buffer.getvalue().splitlines() if line.strip()]


def test_a_request_logs_the_id_its_client_saw(client: Any, json_lines: io.StringIO) -> None:
    file_id = upload(client)
    answer = client.post("/v1/fine_tuning/jobs", json={"model": "SmolLM2-135M-Instruct",
                                                      "training_file": file_id})
    request_id = answer.headers["x-request-id"]
    logged = [line for line in lines(json_lines) if line.get("request_id") == request_id]
    assert logged, json_lines.getvalue()
    [access] = [line for line in logged if line["logger"] == "tunegate.access"]
    assert access["operation"] == "createFineTuningJob" and access["status"] == 200
    assert access["message"] == "POST /v1/fine_tuning/jobs 200"
    for line in lines(json_lines):
        assert {"time", "level", "logger", "message"} <= set(line)
        assert line["time"].endswith("Z")


def test_worker_lines_carry_the_job_id(client: Any, settings: Settings,
                                       json_lines: io.StringIO) -> None:
    from tunegate.worker.host import DataFolderHost
    from tunegate.worker.loop import Worker

    job = create_job(client, upload(client))
    assert Worker(DataFolderHost.open(settings)).validate_next()
    claimed = [line for line in lines(json_lines) if line["logger"] == "tunegate.worker"
               and "claimed" in line["message"]]
    assert [line["job_id"] for line in claimed] == [job["id"]]
    assert logs.job_id.get() is None  # not left behind for the next job


def test_a_traceback_stays_inside_its_line(json_lines: io.StringIO) -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("tunegate.test").exception("it failed")
    [line] = lines(json_lines)
    assert line["level"] == "error" and "ValueError: boom" in line["exception"]


def test_uvicorn_logs_json_too_and_leaves_the_access_log_to_tunegate() -> None:
    config = log_config("json")
    assert all(formatter == {"()": logs.JsonFormatter}
               for formatter in config["formatters"].values())
    assert uvicorn_options(Settings(log_format="json"))["access_log"] is False
    assert uvicorn_options(Settings())["access_log"] is True
    with pytest.raises(ValueError, match="TUNEGATE_LOG_FORMAT"):
        Settings.from_env({"TUNEGATE_LOG_FORMAT": "xml"})
