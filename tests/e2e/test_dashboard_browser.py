"""The dashboard in a real headless Chromium (Debian's ``chromium``, driven by Playwright): a
running job's page draws its loss curve as it trains and shows the end; the form uploads a file
and starts a job, and shows the server's errors with their line numbers; the chat panel answers
with the fine-tuned model beside the base; "Evaluate this model" grades the trained model and
its base on the job's validation file, the Evals view shows both runs side by side and their
output items, and a second click runs the model on that eval's items again; a server with keys
gets a key prompt. Every test checks that the page asked no host but the server.

Screenshots of the job page (running, and finished), its chat panel and the jobs list are saved
under the session's pytest temporary folder: ``<basetemp>/artifacts/dashboard-*.png``
(``--basetemp=DIR`` to choose it).

Never ``playwright install``: it downloads browsers. Without ``/usr/bin/chromium``
(``make system-packages`` installs it) these tests are skipped.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from openai import OpenAI

from tests.conftest import Server, start_server, stop_server
from tests.e2e.test_training_sdk import BASE, fact_lines, serve_with_shared_cache
from tests.helpers import sdk_create_job, sdk_upload, wait_until_finished
from tests.servers import sdk_client

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


TRAINING_MS = 600_000  # a loaded 2-core machine: the first job also converts the base model
KEY = "sk-tg-dashboard-0000000000000000000000000000"
POINTS = "Number(document.querySelector('svg.loss-chart')?.dataset.trainPoints || 0)"
# Playwright evaluates a bare expression with eval(), which the page's policy forbids (no
# 'unsafe-eval'); a function is handed to the browser as it is.


@pytest.fixture(scope="module")
def training_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from serve_with_shared_cache(tmp_path_factory, "dashboard")


@pytest.fixture(scope="module")
def client(training_server: Server) -> OpenAI:
    return sdk_client(training_server, api_key="local", max_retries=0)


class Tab:
    """A page of its own browser context, recording every request and script error."""

    def __init__(self, browser: Any, server: Server):
        self.server = server
        self.context = browser.new_context(viewport={"width": 1200, "height": 900})
        self.page = self.context.new_page()
        self.page.set_default_timeout(30_000)
        self.requests: list[Any] = []
        self.errors: list[str] = []
        self.page.on("request", lambda request: self.requests.append(request))
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))

    def open(self, fragment: str = "") -> None:
        self.page.goto(f"{self.server.base_url}/dashboard/{fragment}")

    def points(self) -> int:
        return int(self.page.evaluate(f"() => {POINTS}"))

    def close(self) -> None:
        """Fails when the page asked any other host, or a script failed."""
        self.context.close()
        server = urlsplit(self.server.base_url).netloc
        others = [r.url for r in self.requests if urlsplit(r.url).netloc != server]
        assert not others, f"requests to other hosts: {others}"
        assert not self.errors, self.errors


@pytest.fixture
def tab(browser: Any, training_server: Server) -> Iterator[Tab]:
    opened = Tab(browser, training_server)
    yield opened
    opened.close()


@pytest.fixture(scope="module")
def trained_job(client: OpenAI) -> str:
    """A job of 16 steps (16 examples, batch 2, 2 epochs) with a validation file; its id, as
    soon as it is created."""
    return sdk_create_job(
        client, sdk_upload(client, fact_lines(16)).id, seed=3, suffix="dash",
        validation_file=sdk_upload(client, fact_lines(4, offset=100)).id,
        method={"type": "supervised", "supervised": {"hyperparameters": {
            "n_epochs": 2, "batch_size": 2}}}).id


def test_a_running_jobs_page_draws_its_loss_curve_to_the_end(
        tab: Tab, client: OpenAI, trained_job: str, artifacts: Path,
        training_server: Server) -> None:
    tab.open(f"#/jobs/{trained_job}")
    page = tab.page
    page.wait_for_function(f"() => {POINTS} >= 1", timeout=TRAINING_MS)
    first = tab.points()
    page.wait_for_function(f"() => {POINTS} > {first}", timeout=TRAINING_MS)
    assert page.locator(".job-view").get_attribute("data-status") == "running"
    assert "step " in page.locator(".progress-text").inner_text()
    page.screenshot(path=str(artifacts / "dashboard-job-running.png"), full_page=True)

    page.wait_for_selector(".job-view[data-status=succeeded]", timeout=TRAINING_MS)
    how = "the event stream" if _has_event_stream(training_server) else "polling"
    page.wait_for_selector(f"text=events read by {how}")
    done = client.fine_tuning.jobs.retrieve(trained_job)
    assert done.status == "succeeded", training_server.log()[-3000:]
    page.wait_for_function(f"() => {POINTS} >= 16")
    assert tab.points() == 16
    assert int(page.evaluate(
        "() => Number(document.querySelector('svg.loss-chart').dataset.validPoints)")) >= 1
    assert page.locator("svg.loss-chart polyline.train").count() == 1
    assert page.locator(".job-progress").evaluate("bar => bar.value === bar.max")
    hyperparameters = page.locator("table.hyperparameters").inner_text()
    assert "n_epochs\t2" in hyperparameters and "batch_size\t2" in hyperparameters
    page.wait_for_function(
        "() => document.querySelectorAll('table.checkpoints tbody tr').length === 2")
    assert f"{done.fine_tuned_model}:ckpt-step-16" in page.locator("table.checkpoints").inner_text()
    assert done.fine_tuned_model in page.locator(".summary").inner_text()
    # The chat panel, there since the first checkpoint, now offers the final model first.
    assert page.locator("select[name=chat-model]").input_value() == done.fine_tuned_model
    assert "The job has successfully completed" in page.locator("table.events").inner_text()
    for action in ("pause", "resume", "cancel"):
        assert page.locator(f"button.action-{action}").is_disabled()
    page.screenshot(path=str(artifacts / "dashboard-job-succeeded.png"), full_page=True)


def _has_event_stream(server: Server) -> bool:
    """Whether this server's contract declares the events' ``stream`` parameter."""
    spec = httpx.get(f"{server.api}/openapi.json", timeout=10).json()
    operation = spec["paths"]["/fine_tuning/jobs/{fine_tuning_job_id}/events"]["get"]
    return any(parameter.get("name") == "stream" for parameter in operation["parameters"])


def test_without_the_event_stream_the_page_polls_the_events(
        tab: Tab, client: OpenAI, trained_job: str) -> None:
    """A server without ``stream=true`` (an older tunegate answers 400 unknown_parameter):
    the page reads the same events by polling the paged list."""
    done = wait_until_finished(client, trained_job)
    refusal = {"error": {"message": "Unknown query parameter 'stream'.", "type":
                         "invalid_request_error", "param": "stream", "code": "unknown_parameter"}}
    tab.page.route(lambda url: "/events?stream=true" in url, lambda route: route.fulfill(
        status=400, content_type="application/json", body=json.dumps(refusal)))
    tab.open(f"#/jobs/{trained_job}")
    page = tab.page
    page.wait_for_selector("text=events read by polling")
    assert tab.points() == 16
    events = page.locator("table.events").inner_text()
    assert "The job has successfully completed" in events and "Step 16/16" in events
    assert done.fine_tuned_model in page.locator(".summary").inner_text()


def test_the_chat_panel_answers_with_the_tuned_model_and_the_base(
        tab: Tab, client: OpenAI, trained_job: str, artifacts: Path) -> None:
    done = wait_until_finished(client, trained_job)
    assert done.status == "succeeded"
    tab.open(f"#/jobs/{trained_job}")
    page = tab.page
    picker = page.locator("select[name=chat-model]")
    picker.wait_for()
    page.wait_for_function(
        "() => document.querySelector('select[name=chat-model]').options.length === 3")  # final + 2
    assert picker.input_value() == done.fine_tuned_model
    page.fill("textarea[name=prompt]", "What is the code word of planet Zorb-3?")
    page.click(".chat button[type=submit]")
    for role in ("tuned", "base"):
        answer = page.locator(f"pre.answer[data-role={role}]")
        page.wait_for_selector(f"pre.answer[data-role={role}][data-state=done]", timeout=180_000)
        assert answer.inner_text().strip(), role
    # The tuned model learned the made-up fact; the base never saw it.
    assert "blue3" in page.locator("pre.answer[data-role=tuned]").inner_text()
    assert "blue3" not in page.locator("pre.answer[data-role=base]").inner_text()
    page.locator(".chat").screenshot(path=str(artifacts / "dashboard-chat.png"))
    chats = [r for r in tab.requests if r.url.endswith("/v1/chat/completions")]
    assert {json.loads(r.post_data)["model"] for r in chats} == {done.fine_tuned_model, done.model}
    assert all(json.loads(r.post_data)["stream"] is True for r in chats)


EVAL_MS = 300_000  # 4 items on each model, up to 256 tokens each, on a loaded 2-core machine


@pytest.mark.filterwarnings("ignore:The Evals API is deprecated:DeprecationWarning")
def test_evaluate_this_model_grades_it_beside_its_base_in_the_evals_view(
        tab: Tab, client: OpenAI, trained_job: str, artifacts: Path,
        training_server: Server) -> None:
    done = wait_until_finished(client, trained_job)
    assert done.status == "succeeded" and done.fine_tuned_model
    strict = sdk_client(training_server, api_key="local", max_retries=0,
                    _strict_response_validation=True)
    tab.open(f"#/jobs/{trained_job}")
    page = tab.page
    page.wait_for_selector("select[name=eval-choice] option[value=validation]", state="attached")
    assert page.locator("select[name=eval-choice]").input_value() == "validation"
    page.click("button.evaluate")
    page.wait_for_url("**/dashboard/#/evals/eval_*")
    eval_id = page.url.rsplit("/", 1)[-1]
    page.wait_for_selector(".eval-view[data-runs='2']")
    page.wait_for_function(
        "() => document.querySelectorAll('table.runs-compare .status-completed').length === 2",
        timeout=EVAL_MS)
    runs = list(strict.evals.runs.list(eval_id))
    assert [run.model for run in runs] == [done.fine_tuned_model, done.model]
    assert all(run.result_counts.total == 4 for run in runs), training_server.log()[-3000:]
    evaluation = strict.evals.retrieve(eval_id)
    assert evaluation.metadata == {"fine_tuning_job": trained_job,
                                   "validation_file": done.validation_file}
    [criterion] = evaluation.testing_criteria
    for run in runs:  # the page shows the API's numbers
        [result] = run.per_testing_criteria_results
        shown = page.locator(f"tr[data-criterion='{criterion.id}'] td[data-run-id={run.id}]")
        assert shown.inner_text().endswith(f"({result.passed}/{result.passed + result.failed})")
    page.screenshot(path=str(artifacts / "dashboard-evals-real.png"), full_page=True)

    tuned = runs[0]
    page.click(f"th[data-run-id={tuned.id}] a")
    page.wait_for_selector(".run-view[data-status=completed] table.output-items tbody tr")
    assert page.url.endswith(f"#/evals/{eval_id}/runs/{tuned.id}")
    assert tuned.report_url.endswith(f"/dashboard/#/evals/{eval_id}/runs/{tuned.id}")
    rows = page.locator("table.output-items tbody tr")
    assert rows.count() == 4
    for item in strict.evals.runs.output_items.list(tuned.id, eval_id=eval_id):
        row = page.locator(f"tr[data-item='{item.datasource_item_id}']")
        assert item.sample.output[0].content.strip() in row.locator(".sample-output").inner_text()
        assert "What is the code word of planet Zorb-" in row.locator(".sample-input").inner_text()

    # Once more on the same eval: the model answers the same items, a third column.
    tab.open(f"#/jobs/{trained_job}")
    page.wait_for_selector(f"select[name=eval-choice] option[value={eval_id}]", state="attached")
    page.select_option("select[name=eval-choice]", eval_id)
    page.click("button.evaluate")
    page.wait_for_url(f"**/dashboard/#/evals/{eval_id}")
    page.wait_for_selector(".eval-view[data-runs='3']")
    third = list(strict.evals.runs.list(eval_id))[-1]
    assert third.model == done.fine_tuned_model
    assert third.data_source.source == tuned.data_source.source


def _choose(page: Any, name: str, content: bytes, field: str = "training") -> None:
    page.set_input_files(f"input[name={field}]", files=[
        {"name": name, "mimeType": "application/jsonl", "buffer": content}])


def test_a_job_started_from_the_form_runs_and_its_cancel_button_works(
        tab: Tab, client: OpenAI, artifacts: Path) -> None:
    tab.open()
    page = tab.page
    page.wait_for_selector(f"select[name=model] option[value='{BASE}']",
                           state="attached")
    _choose(page, "form.jsonl", fact_lines(10, offset=200))
    page.fill("input[name=suffix]", "from-form")
    page.fill("input[name=epochs]", "1")
    page.click("form.create-job button[type=submit]")
    page.wait_for_url("**/dashboard/#/jobs/ftjob-*")
    job_id = page.url.rsplit("/", 1)[-1]
    job = client.fine_tuning.jobs.retrieve(job_id)
    assert (job.model, job.user_provided_suffix, job.method.type) == (
        BASE, "from-form", "supervised")
    assert job.method.supervised.hyperparameters.n_epochs == 1
    assert client.files.retrieve(job.training_file).filename == "form.jsonl"
    page.wait_for_function(f"() => {POINTS} >= 1", timeout=TRAINING_MS)
    page.click("button.action-cancel")
    page.wait_for_selector(".job-view[data-status=cancelled]", timeout=60_000)
    assert client.fine_tuning.jobs.retrieve(job_id).status == "cancelled"
    # The jobs list shows it, newest first.
    page.click("text=← all jobs")
    first_row = page.locator("table.jobs tbody tr").first
    first_row.wait_for()
    assert first_row.get_attribute("data-job-id") == job_id
    assert "from-form" in first_row.inner_text() and "cancelled" in first_row.inner_text()
    page.screenshot(path=str(artifacts / "dashboard-jobs.png"), full_page=True)


def test_the_form_shows_errors_with_their_line_numbers(tab: Tab, client: OpenAI) -> None:
    tab.open()
    page = tab.page
    page.wait_for_selector(f"select[name=model] option[value='{BASE}']", state="attached")
    broken = fact_lines(2) + b'{"messages": [oops\n' + fact_lines(9, offset=2)
    _choose(page, "broken.jsonl", broken)
    page.click("form.create-job button[type=submit]")
    alert = page.locator(".form-status [role=alert]")
    alert.wait_for()
    assert "broken.jsonl" in alert.inner_text() and "Line 3" in alert.inner_text()
    assert "#/jobs/" not in page.url

    # Valid JSONL whose line 2 is no training example: the job is created and fails validation.
    invalid = fact_lines(1) + b'{"prompt_text": "no such format"}\n' + fact_lines(10, offset=1)
    _choose(page, "invalid.jsonl", invalid)
    page.click("form.create-job button[type=submit]")
    page.wait_for_url("**/dashboard/#/jobs/ftjob-*")
    page.wait_for_selector(".job-view[data-status=failed]", timeout=120_000)
    shown = page.locator(".job-view .error").inner_text()
    job = client.fine_tuning.jobs.retrieve(page.url.rsplit("/", 1)[-1])
    assert job.error is not None and "Line 2" in job.error.message
    assert job.error.message in shown and job.error.code in shown


@pytest.fixture
def keyed_server(tmp_path: Path) -> Iterator[Server]:
    running = start_server(tmp_path, env={"TUNEGATE_API_KEY": KEY, "TUNEGATE_WORKER": "external"})
    yield running
    stop_server(running)


def test_with_keys_the_page_asks_for_one_and_keeps_it_in_the_session(
        browser: Any, keyed_server: Server) -> None:
    answer = httpx.post(f"{keyed_server.api}/files", headers={"Authorization": f"Bearer {KEY}"},
                        data={"purpose": "fine-tune"}, files={"file": ("k.jsonl", fact_lines(10))})
    assert answer.status_code == 200, answer.text
    keyed = Tab(browser, keyed_server)
    try:
        keyed.open()
        page = keyed.page
        dialog = page.locator("#key-dialog")
        dialog.wait_for(state="visible")
        assert "requires an API key" in dialog.inner_text()
        page.fill("#key-dialog input", "sk-tg-wrong")
        page.click("#key-dialog button[type=submit]")
        page.wait_for_selector("#key-dialog .key-message:has-text('not accepted')")
        page.fill("#key-dialog input", KEY)
        page.click("#key-dialog button[type=submit]")
        dialog.wait_for(state="hidden")
        page.wait_for_selector("text=No jobs yet")
        page.wait_for_selector(f"select[name=model] option[value='{BASE}']",
                               state="attached")
        assert page.evaluate("() => sessionStorage.getItem('tunegate.apiKey')") == KEY
        assert page.evaluate("() => localStorage.length") == 0
        assert page.evaluate("() => document.cookie") == ""
        # One more refresh of the jobs list, sent with the key too.
        page.wait_for_event("requestfinished", timeout=20_000,
                            predicate=lambda r: "/v1/fine_tuning/jobs?" in r.url)
        api = [r for r in keyed.requests if "/v1/" in r.url]
        accepted = [r for r in api if r.response() and r.response().status == 200]
        assert len(accepted) >= 3
        assert all(r.headers.get("authorization") == f"Bearer {KEY}" for r in accepted)
        assert page.locator("#forget-key").is_visible()
        page.click("#forget-key")
        dialog.wait_for(state="visible")
        assert page.evaluate("() => sessionStorage.getItem('tunegate.apiKey')") is None
    finally:
        keyed.close()
