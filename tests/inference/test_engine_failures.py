"""A model process that hangs or dies costs its requests a 503, never the API: in process, with
the real embedded model and real llama-server processes (stopped with SIGSTOP, killed with
SIGKILL)."""

from __future__ import annotations

import os
import signal
import threading
import time
from dataclasses import replace

from tests.inference.conftest import BASE, FRANCE
from tunegate.api.app import create_app

CHAT = "/v1/chat/completions"
BODY = {"model": BASE, "messages": FRANCE, "temperature": 0, "max_tokens": 8}


def _warm_up(client) -> None:
    """A first answer with the test's 5 s timeout: on a loaded machine the new process's first
    request can take longer (429 model_busy: the process answers, just slowly); it is warm once
    one request has gone through."""
    for _ in range(20):
        response = client.post(CHAT, json=BODY)
        if response.status_code != 429:
            break
    assert response.status_code == 200, response.text


def test_a_hung_generation_is_bounded_by_the_timeout(settings) -> None:
    """SIGSTOP the model's process: the request gets 503 model_timeout (not retried) once no
    token came for TUNEGATE_INFERENCE_TIMEOUT seconds; the hung process is killed and the
    next request starts a new one."""
    app = create_app(replace(settings, inference_timeout=5.0), validate_responses=True)
    try:
        with app.test_client() as client:
            _warm_up(client)
            hung = app.state_service.inference.running(BASE)
            os.kill(hung.engine.pid, signal.SIGSTOP)
            response = client.post(CHAT, json=BODY)
            assert response.status_code == 503, response.text
            assert response.json()["error"]["code"] == "model_timeout"
            assert response.headers["x-should-retry"] == "false"
            assert not hung.alive()  # killed, not left stopped
            assert client.get("/v1/models").status_code == 200
            again = client.post(CHAT, json=BODY)
            assert again.status_code == 200, again.text
            assert app.state_service.inference.running(BASE) is not hung
    finally:
        app.state_service.inference.close()


def test_a_process_killed_mid_request_is_a_503_and_starts_again(app, client) -> None:
    """SIGKILL during a plain (not streamed) request: 503 model_process_died, which the SDK may
    resend (x-should-retry: true); the next request is answered by a new process."""
    assert client.post(CHAT, json=BODY).status_code == 200
    victim = app.state_service.inference.running(BASE)
    long = {**BODY, "temperature": 1.0, "seed": 1, "max_tokens": 1500,
            "messages": [{"role": "user", "content": "Write a very long story about a dragon."}]}
    timer = threading.Timer(1.0, os.kill, (victim.engine.pid, signal.SIGKILL))
    timer.start()
    try:
        response = client.post(CHAT, json=long)
    finally:
        timer.cancel()
    assert response.status_code == 503, response.text
    error = response.json()["error"]
    assert error["code"] == "model_process_died" and error["type"] == "server_error"
    assert "SIGKILL" in error["message"]
    assert response.headers["x-should-retry"] == "true"
    assert client.post(CHAT, json=BODY).status_code == 200
    assert app.state_service.inference.running(BASE) is not victim


def _wait_until_decoding(model, timeout: float = 60.0) -> None:
    """Until llama.cpp reports its slot busy: on a loaded machine the long request may take
    seconds to reach it, and a request sent before would take the slot itself."""
    deadline = time.monotonic() + timeout
    while not any(slot.get("is_processing") for slot in model.engine.slots()):
        assert time.monotonic() < deadline, "the long request never reached the slot"
        time.sleep(0.05)


def test_a_request_queued_too_long_behind_others_is_busy_not_hung(settings) -> None:
    """One slot, a long generation in it: a second request that gets no token within the
    timeout is told 429 model_busy, and the process (which still answers) is left running."""
    app = create_app(replace(settings, inference_timeout=5.0, inference_parallel=1),
                     validate_responses=True)
    long = {**BODY, "temperature": 1.0, "seed": 1, "max_tokens": 800,
            "messages": [{"role": "user", "content": "Write a very long story about a dragon."}]}
    try:
        with app.test_client() as client:
            _warm_up(client)
            model = app.state_service.inference.running(BASE)
            first = threading.Thread(target=client.post, args=(CHAT,), kwargs={"json": long})
            first.start()
            _wait_until_decoding(model)  # the long one holds the only slot (not a fixed sleep)
            queued = client.post(CHAT, json=BODY)
            first.join()
            assert queued.status_code == 429, queued.text
            assert queued.json()["error"]["code"] == "model_busy"
            assert model.alive() and app.state_service.inference.running(BASE) is model
    finally:
        app.state_service.inference.close()
