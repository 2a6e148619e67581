"""A job's page in a real headless Chromium in each state a user meets, fed by a fake API
(``FakeJobApi``, answering the page's requests with a job, its events and its checkpoints as
the test sets them): what the page says about a queued job's estimates, a failed job, a job
without a validation file, a job past its last step (exporting), a finished one; that Cancel
does not look like Pause; that model ids wrap only at their ``:``.

No server and no training: the states are set, not waited for, so each is certain to be seen
(tests/e2e/test_dashboard_browser.py watches a real job). Screenshots of each page go to
``<basetemp>/artifacts/dashboard-page-<state>.png``.

Never ``playwright install``: it downloads browsers. Without ``/usr/bin/chromium``
(``make system-packages`` installs it) these tests are skipped.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from tunegate.api.dashboard import ASSETS, MEDIA_TYPES

pytestmark = pytest.mark.e2e


ORIGIN = "http://tunegate.test"  # never resolved: every request is answered by FakeJobApi
JOB_ID = "ftjob-0DashboardPagesTest00000"
BASE = "SmolLM2-135M-Instruct"
TUNED = f"ft:{BASE}:org-local:dash:k3v9q2xw"
TOTAL_STEPS = 36
EPOCHS = 3


class FakeJobApi:
    """Answers the dashboard's requests: its files from ``assets``, the job, its events (newest
    first, one page; the event stream refused as an older server does, so the page polls) and
    its checkpoints as set on this object; anything else a 404."""

    def __init__(self, assets: Path = ASSETS) -> None:
        self.assets = assets
        self.job: dict[str, Any] = {}
        self.events: list[dict[str, Any]] = []  # oldest first
        self.checkpoints: list[dict[str, Any]] = []

    def __call__(self, route: Any) -> None:
        url = urlsplit(route.request.url)
        jobs = f"/v1/fine_tuning/jobs/{JOB_ID}"
        if url.path.startswith("/dashboard/"):
            file = self.assets / (url.path.removeprefix("/dashboard/") or "index.html")
            route.fulfill(status=200, body=file.read_bytes(),
                          content_type=MEDIA_TYPES[file.suffix])
        elif url.path == jobs:
            fulfill_json(route, self.job)
        elif url.path == f"{jobs}/events" and "stream" in parse_qs(url.query):
            fulfill_json(route, {"error": {"message": "Unknown query parameter 'stream'.",
                                         "type": "invalid_request_error", "param": "stream",
                                         "code": "unknown_parameter"}}, status=400)
        elif url.path == f"{jobs}/events":
            fulfill_json(route, list_page(list(reversed(self.events))))
        elif url.path == f"{jobs}/checkpoints":
            fulfill_json(route, list_page(list(reversed(self.checkpoints))))
        elif url.path == "/v1/chat/completions":
            chunks = [{"choices": [{"index": 0, "delta": {"content": word}}]}
                      for word in ("The code word ", "is blue3.")]
            route.fulfill(status=200, content_type="text/event-stream", body="".join(
                f"data: {json.dumps(chunk)}\n\n" for chunk in chunks) + "data: [DONE]\n\n")
        else:
            fulfill_json(route, {"error": {"message": f"No route {url.path}", "type":
                                         "invalid_request_error", "param": None,
                                         "code": "not_found"}}, status=404)


def fulfill_json(route: Any, body: Any, status: int = 200) -> None:
    """Answer a routed request of the page as the API does: JSON with ``status``."""
    route.fulfill(status=status, content_type="application/json", body=json.dumps(body))


def list_page(data: list[dict[str, Any]]) -> dict[str, Any]:
    """One page of an OpenAI list holding all of ``data``."""
    return {"object": "list", "data": data, "has_more": False,
            "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None}


def job(status: str, *, created: int, validation_file: str | None = None,
        **changes: Any) -> dict[str, Any]:
    """A job as GET /fine_tuning/jobs/{id} answers it, hyperparameters resolved."""
    return {
        "object": "fine_tuning.job", "id": JOB_ID, "model": BASE, "created_at": created,
        "finished_at": None, "fine_tuned_model": None, "organization_id": "org-local",
        "result_files": [], "status": status, "validation_file": validation_file,
        "training_file": "file-0DashboardTrainingFile00", "hyperparameters": {
            "n_epochs": EPOCHS, "batch_size": 2, "learning_rate_multiplier": 1.0},
        "method": {"type": "supervised", "supervised": {"hyperparameters": {
            "n_epochs": EPOCHS, "batch_size": 2, "learning_rate_multiplier": 1.0}}},
        "trained_tokens": None, "error": None, "user_provided_suffix": "dash", "seed": 7,
        "estimated_finish": None, "integrations": [], "metadata": None, **changes}


def event(number: int, at: int, message: str, **fields: Any) -> dict[str, Any]:
    return {"object": "fine_tuning.job.event", "id": f"ftevent-{number:024d}",
            "created_at": at, "level": "info", "message": message, "type": "message",
            "data": {}, **fields}


def steps(through: int, start: int, *, validation: bool) -> list[dict[str, Any]]:
    """Metrics events of steps 1..through, a noisy falling train loss (the same every run)."""
    events = []
    for step in range(1, through + 1):
        train = 2.2 * math.exp(-step / 14) + 0.35 + 0.3 * math.sin(step * 2.7)
        valid = 2.0 * math.exp(-step / 16) + 0.5 if validation and step % 12 == 0 else None
        data = {"step": step, "train_loss": round(train, 4), "valid_loss": valid,
                "learning_rate": 1e-4, "tokens_per_second": 1500.0, "total_steps": TOTAL_STEPS}
        events.append(event(100 + step, start + 2 * step,
                            f"Step {step}/{TOTAL_STEPS}: training loss={train:.4f}",
                            type="metrics", data=data))
    return events


def checkpoints(through: int, at: int) -> list[dict[str, Any]]:
    per_epoch = TOTAL_STEPS // EPOCHS
    return [{"object": "fine_tuning.job.checkpoint", "id": f"ftckpt_{step:024d}",
             "created_at": at, "fine_tuned_model_checkpoint": f"{TUNED}:ckpt-step-{step}",
             "fine_tuning_job_id": JOB_ID, "step_number": step,
             "metrics": {"step": step, "train_loss": 0.5, "valid_loss": None}}
            for step in range(per_epoch, through + 1, per_epoch)]


class DashboardTab:
    """The dashboard over ``api`` (a fake API: every request of the page is routed to it), in
    a browser context of its own; a script error of the page fails ``close``."""

    def __init__(self, browser: Any, api: Callable[[Any], None]) -> None:
        self.context = browser.new_context(viewport={"width": 1280, "height": 1000})
        self.context.route("**/*", api)
        self.page = self.context.new_page()
        self.page.set_default_timeout(20_000)
        self.errors: list[str] = []
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))

    def goto(self, fragment: str) -> Any:
        """The page at ``fragment`` (``#/…``)."""
        self.page.goto(f"{ORIGIN}/dashboard/{fragment}")
        return self.page

    def close(self) -> None:
        self.context.close()
        assert not self.errors, self.errors


class JobTab(DashboardTab):
    """The job's page."""

    def open(self, status: str) -> Any:
        page = self.goto(f"#/jobs/{JOB_ID}")
        page.wait_for_selector(f".job-view[data-status={status}]")
        page.wait_for_selector("table.events tbody tr")
        return page


@pytest.fixture
def api() -> FakeJobApi:
    return FakeJobApi()


@pytest.fixture
def tab(browser: Any, api: FakeJobApi) -> Iterator[JobTab]:
    opened = JobTab(browser, api)
    yield opened
    opened.close()


def _legend(page: Any) -> list[str]:
    return [text or "" for text in page.locator("svg.loss-chart text.legend").all_text_contents()]


def _chart(page: Any, name: str) -> int:
    return int(page.locator("svg.loss-chart").get_attribute(f"data-{name}") or 0)


def test_a_failed_job_says_it_failed_and_not_yet(tab: JobTab, api: FakeJobApi,
                                                  artifacts: Path) -> None:
    created = int(time.time()) - 90
    message = "Training file has 1 example(s), but must have at least 10 examples"
    api.job = job("failed", created=created, finished_at=created + 4, error={
        "code": "invalid_n_examples", "message": message, "param": "training_file"})
    api.events = [event(1, created, f"Created fine-tuning job: {JOB_ID}"),
                  event(2, created + 4, message, level="error")]
    page = tab.open("failed")
    page.wait_for_selector("table.checkpoints td.muted")
    text = page.locator("main").inner_text()
    assert "yet" not in text.lower(), text
    assert ("no training steps: the job failed before its first step"
            in (page.locator("svg.loss-chart").text_content() or ""))
    assert ("None: the job failed before the end of its first epoch."
            in page.locator("table.checkpoints").inner_text())
    assert message in page.locator(".job-view .error").inner_text()
    assert "Duration\n4 s" in page.locator(".summary").inner_text()
    page.screenshot(path=str(artifacts / "dashboard-page-failed.png"), full_page=True)


def test_a_queued_job_shows_its_estimated_finish_and_memory_estimate(
        tab: JobTab, api: FakeJobApi, artifacts: Path) -> None:
    """Before training starts: the worker's estimate of the finish (set when the files were
    validated) and of the memory (its plan event), as tunegate.worker.memory_plan words it."""
    now = int(time.time())
    created = now - 20
    api.job = job("queued", created=created, estimated_finish=now + 300)
    plan = ("Memory estimate: 1.9 GiB (base weights 0.3 GiB, activations 0.8 GiB, loss 0.1 GiB, "
            "LoRA and optimizer 0.1 GiB, runtime 0.7 GiB) of the 20.3 GiB the trainer may use")
    api.events = [event(1, created, f"Created fine-tuning job: {JOB_ID}"),
                  event(2, created + 2, f"{plan}. Duration estimate: 6000 tokens to train, "
                                        "about 5 min"),
                  event(3, created + 2, "Files validated, moving job to queued state")]
    page = tab.open("queued")
    page.wait_for_function(
        "() => document.querySelector('.memory-estimate').textContent !== '–'")
    assert page.locator(".memory-estimate").inner_text() == plan.removeprefix("Memory estimate: ")
    progress = page.locator(".progress-text").inner_text()
    assert "ETA" in progress and "queued" in progress, progress
    page.screenshot(path=str(artifacts / "dashboard-page-queued.png"), full_page=True)


def test_a_running_job_without_a_validation_file_shows_no_validation_loss(
        tab: JobTab, api: FakeJobApi, artifacts: Path) -> None:
    now = int(time.time())
    created = now - 100
    api.job = job("running", created=created, trained_tokens=4000, estimated_finish=now + 60)
    api.events = [event(1, created, f"Created fine-tuning job: {JOB_ID}"),
                  *steps(20, created + 10, validation=False)]
    api.checkpoints = checkpoints(20, now - 20)
    page = tab.open("running")
    page.wait_for_function(
        "() => document.querySelector('svg.loss-chart').dataset.trainPoints === '20'")
    assert _legend(page) == ["train loss", "train (smoothed)"]
    assert _chart(page, "valid-points") == 0
    assert _chart(page, "smooth-points") == 20
    assert _chart(page, "epoch-marks") == EPOCHS - 1
    assert page.locator(".job-view").get_attribute("data-stage") == "training"
    assert page.locator(".job-head .stage").inner_text() == ""
    progress = page.locator(".progress-text").inner_text()
    assert "step 20/36" in progress and "ETA" in progress, progress
    assert "so far" in page.locator(".summary").inner_text()
    page.screenshot(path=str(artifacts / "dashboard-page-running.png"), full_page=True)


def test_past_its_last_step_the_page_shows_the_export_not_an_eta(
        tab: JobTab, api: FakeJobApi, artifacts: Path) -> None:
    now = int(time.time())
    created = now - 150
    # The server's estimate was for the last step: it is in the past now.
    api.job = job("running", created=created, trained_tokens=7200, estimated_finish=now - 40,
                  validation_file="file-0DashboardValidFile0000")
    api.events = [event(1, created, f"Created fine-tuning job: {JOB_ID}"),
                  *steps(TOTAL_STEPS, created + 10, validation=True)]
    api.checkpoints = checkpoints(TOTAL_STEPS, now - 30)
    page = tab.open("running")
    page.wait_for_selector(".job-view[data-stage=saving]")
    assert "all steps done: saving the model" in page.locator(".job-head .stage").inner_text()
    assert "ETA" not in page.locator(".progress-text").inner_text()

    api.events.append(event(999, now - 5, "Exporting the adapter and its checkpoints to GGUF"))
    page.wait_for_selector(".job-view[data-stage=exporting]", timeout=30_000)
    assert page.locator(".job-head .stage").inner_text() == "exporting the model to GGUF…"
    progress = page.locator(".progress-text").inner_text()
    assert "step 36/36" in progress and "ETA" not in progress, progress
    assert _legend(page) == ["train loss", "train (smoothed)", "valid loss"]
    assert _chart(page, "valid-points") == TOTAL_STEPS // 12
    page.screenshot(path=str(artifacts / "dashboard-page-exporting.png"), full_page=True)


def test_a_succeeded_job_shows_its_duration_and_model_ids_that_wrap_at_colons(
        tab: JobTab, api: FakeJobApi, artifacts: Path) -> None:
    now = int(time.time())
    created = now - 400
    api.job = job("succeeded", created=created, finished_at=created + 192, trained_tokens=7200,
                  fine_tuned_model=TUNED)
    api.events = [event(1, created, f"Created fine-tuning job: {JOB_ID}"),
                  *steps(TOTAL_STEPS, created + 10, validation=False),
                  event(998, created + 190, f"New fine-tuned model created: {TUNED}"),
                  event(999, created + 192, "The job has successfully completed")]
    api.checkpoints = checkpoints(TOTAL_STEPS, created + 180)
    page = tab.open("succeeded")
    page.wait_for_selector("table.checkpoints .model-id")
    assert "Duration\n3 min 12 s" in page.locator(".summary").inner_text()
    assert page.locator(".job-view").get_attribute("data-stage") == ""
    assert _legend(page) == ["train loss", "train (smoothed)"]
    names = page.locator("table.checkpoints .model-id")
    assert names.count() == EPOCHS
    for index in range(EPOCHS):
        name = names.nth(index)
        # A break may come after each ":" and nowhere else.
        assert name.evaluate("e => e.querySelectorAll('wbr').length") == name.inner_text().count(":")
        assert name.evaluate("e => getComputedStyle(e).wordBreak") != "break-all"
        assert name.evaluate("e => getComputedStyle(e).overflowWrap") == "normal"
    page.screenshot(path=str(artifacts / "dashboard-page-succeeded.png"), full_page=True)


def test_the_chat_shows_each_answers_time_to_first_words(tab: JobTab, api: FakeJobApi) -> None:
    created = int(time.time()) - 400
    api.job = job("succeeded", created=created, finished_at=created + 192, fine_tuned_model=TUNED)
    api.events = [event(1, created, "The job has successfully completed")]
    page = tab.open("succeeded")
    page.fill("textarea[name=prompt]", "What is the code word of planet Zorb-3?")
    page.click(".chat button[type=submit]")
    for role in ("tuned", "base"):
        page.wait_for_selector(f"pre.answer[data-role={role}][data-state=done]")
        assert page.locator(f"pre.answer[data-role={role}]").inner_text() == "The code word is blue3."
        timing = page.locator(f".timing[data-role={role}]").inner_text()
        assert re.fullmatch(r"first words after \d+\.\d s, whole answer after \d+\.\d s", timing), timing
    assert "merging its adapter" in page.locator(".chat").inner_text()


def test_cancel_does_not_look_like_pause(tab: JobTab, api: FakeJobApi) -> None:
    created = int(time.time()) - 30
    api.job = job("running", created=created)
    api.events = [event(1, created, f"Created fine-tuning job: {JOB_ID}")]
    page = tab.open("running")
    style = ("e => { const s = getComputedStyle(e); "
             "return [s.backgroundColor, s.color, s.borderColor]; }")
    pause = page.locator("button.action-pause").evaluate(style)
    cancel = page.locator("button.action-cancel").evaluate(style)
    assert cancel[0] != pause[0] and cancel[1] != pause[1], (pause, cancel)
    assert page.locator("button.action-cancel").inner_text() == "Cancel job"


def test_a_reinforcement_job_draws_rewards_and_shows_sampled_answers(
        tab: JobTab, api: FakeJobApi, artifacts: Path) -> None:
    start = int(time.time()) - 100
    api.job = job("running", created=start, validation_file="file-0DashboardValidation000",
                  method={"type": "reinforcement", "reinforcement": {
                      "grader": {"type": "string_check", "name": "g", "operation": "eq",
                                 "input": "{{sample.output_text}}", "reference": "x"},
                      "response_format": None, "hyperparameters": {
                          "n_epochs": EPOCHS, "batch_size": 4, "learning_rate_multiplier": 0.2,
                          "compute_multiplier": 1.0, "eval_interval": 2, "eval_samples": 1,
                          "reasoning_effort": "default"}}})
    api.events = [event(1, start, "Fine-tuning job started")] + [
        event(100 + step, start + step, f"Step {step}/{TOTAL_STEPS}: reward mean=0.5",
              type="metrics", data={
                  "step": step, "total_steps": TOTAL_STEPS, "train_reward_mean": step / 10,
                  "valid_reward_mean": 0.4 if step == 2 else None,
                  "samples": [{"line": step, "reward": 1.0, "output_text": f"answer {step}"},
                              {"line": step, "reward": None, "output_text": "oops"}]})
        for step in (1, 2, 3)]
    page = tab.open("running")
    page.wait_for_function(
        "() => document.querySelector('svg.loss-chart').dataset.trainPoints === '3'")
    assert page.locator("svg.loss-chart").get_attribute("data-figure") == "reward"
    assert _legend(page) == ["train reward", "valid reward"]
    assert _chart(page, "valid-points") == 1
    assert "Reward" in page.locator("section.card h2").all_text_contents()
    rows = page.locator("table.samples tbody tr").all_inner_texts()
    assert [row.split("\t") for row in rows] == [["3", "3", "1.0000", "answer 3"],
                                                 ["3", "3", "grader error", "oops"]]
    assert "eval_0DashboardPagesTest00000" in (page.locator(".job-view").text_content() or "")
    page.screenshot(path=str(artifacts / "dashboard-page-reinforcement.png"), full_page=True)
