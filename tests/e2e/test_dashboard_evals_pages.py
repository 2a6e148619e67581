"""The dashboard's Evals views and a job's "Evaluate this model" card in a real headless
Chromium, fed by a fake API (``FakeEvalApi``: an eval, its runs and their output items as the
test sets them; what the page creates is recorded and answered as the API would): two runs side
by side with each criterion's pass rate, a long run's items paged and filtered with their
errors, the card starting a run on an eval's items or a new eval of the validation file, and the
validation file read into the same items as ``tunegate eval --job`` reads it.

No server: every state is set, not waited for (tests/e2e/test_dashboard_browser.py evaluates a
really trained model on a real server). Screenshots go to
``<basetemp>/artifacts/dashboard-evals-*.png``.

Never ``playwright install``: it downloads browsers. Without ``/usr/bin/chromium``
(``make system-packages`` installs it) these tests are skipped.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.e2e.test_dashboard_pages import BASE, JOB_ID, ORIGIN, TUNED, DashboardTab, fulfill_json, job
from tunegate.api.dashboard import ASSETS, MEDIA_TYPES
from tunegate.client.job_eval import default_criterion, validation_items

pytestmark = pytest.mark.e2e

EVAL_ID = "eval_0DashboardEvalsTest000000"
OTHER_EVAL = "eval_0DashboardEvalsOther00000"
CRITERIA = [{"id": "exact-1", "type": "string_check", "name": "exact",
             "input": "{{ sample.output_text }}", "reference": "{{ item.answer }}",
             "operation": "eq"},
            {"id": "close-2", "type": "text_similarity", "name": "close",
             "input": "{{ sample.output_text }}", "reference": "{{ item.answer }}",
             "evaluation_metric": "rouge_l", "pass_threshold": 0.6}]
ITEMS = 45  # three pages of 20
VALIDATION = [
    {"messages": [{"role": "system", "content": "Be brief."},
                  {"role": "user", "content": "Code word of Zorb-1?"},
                  {"role": "assistant", "content": "blue1"}]},
    {"prompt": "Code word of Zorb-2?", "completion": "blue2"},
    {"messages": [{"role": "user", "content": [{"type": "text", "text": "Zorb-3?"}]},
                  {"role": "assistant", "content": [{"type": "text", "text": "blue3"}]}]},
    {"messages": [{"role": "user", "content": "no answer"}]},
]


def run(run_id: str, model: str, passed: tuple[int, int], *, status: str = "completed",
        created: int = 0) -> dict[str, Any]:
    """An eval run as the API answers it; ``passed``: each criterion's passes of ITEMS."""
    return {"object": "eval.run", "id": run_id, "eval_id": EVAL_ID, "status": status,
            "model": model, "name": model, "created_at": created or int(time.time()),
            "report_url": f"{ORIGIN}/dashboard/#/evals/{EVAL_ID}/runs/{run_id}",
            "result_counts": {"total": ITEMS, "errored": 1, "passed": min(passed),
                              "failed": ITEMS - 1 - min(passed)},
            "per_model_usage": [{"model_name": model, "invocation_count": ITEMS,
                                 "prompt_tokens": 900, "completion_tokens": 300,
                                 "total_tokens": 1200, "cached_tokens": 0}],
            "per_testing_criteria_results": [
                {"testing_criteria": criterion["id"], "passed": count, "failed": ITEMS - count}
                for criterion, count in zip(CRITERIA, passed, strict=True)],
            "data_source": {"type": "completions", "model": model,
                            "source": {"type": "file_id", "id": "file-items"},
                            "input_messages": {"type": "item_reference",
                                               "item_reference": "item.messages"},
                            "sampling_params": {"max_completion_tokens": 64, "temperature": 0}},
            "metadata": None, "error": {"code": "", "message": ""}}


def output_item(run_id: str, index: int) -> dict[str, Any]:
    """Item ``index``: passes when even; item 7 has no sample (the model failed)."""
    good = index % 2 == 0
    error = ({"code": "model_error_500", "message": "the model process died"} if index == 7
             else {"code": "", "message": ""})
    return {"object": "eval.run.output_item", "id": f"outputitem_{index:04d}", "run_id": run_id,
            "eval_id": EVAL_ID, "created_at": 0, "status": "pass" if good else "fail",
            "datasource_item_id": index,
            "datasource_item": {"question": f"Zorb-{index}?", "answer": f"blue{index}"},
            "results": [{"name": "exact-1", "type": "string_check", "score": 1.0 if good else 0.0,
                         "passed": good, "sample": None},
                        {"name": "close-2", "type": "text_similarity",
                         "score": 0.9 if good else 0.25, "passed": good, "sample": None,
                         **({"errors": {"invalid_variable_error": True}} if index == 9 else {})}],
            "sample": {"input": [{"role": "user", "content": f"Zorb-{index}?"}],
                       "output": [] if index == 7 else [
                           {"role": "assistant", "content": f"blue{index if good else 0}"}],
                       "finish_reason": "stop", "model": TUNED, "error": error}}


class FakeEvalApi:
    """Answers the dashboard's requests: its files, ``job`` and an empty events/checkpoints
    page for it, ``evals`` and their ``runs`` (newest first on ``order=desc``), each run's
    ``items`` paged by ``after``/``limit``/``status``; records and answers what the page
    creates (``posted``: (path, body) pairs; an uploaded file's text in ``uploaded``)."""

    def __init__(self) -> None:
        self.job: dict[str, Any] = {}
        self.validation_text = ""
        self.evals: dict[str, dict[str, Any]] = {}
        self.runs: dict[str, list[dict[str, Any]]] = {}  # eval id -> oldest first
        self.items: dict[str, list[dict[str, Any]]] = {}
        self.posted: list[tuple[str, Any]] = []
        self.uploaded: list[str] = []
        self.item_queries: list[dict[str, list[str]]] = []

    def __call__(self, route: Any) -> None:
        request = route.request
        url = urlsplit(request.url)
        path, query = url.path, parse_qs(url.query)
        parts = path.removeprefix("/v1/").split("/")
        if path.startswith("/dashboard/"):
            file = ASSETS / (path.removeprefix("/dashboard/") or "index.html")
            route.fulfill(status=200, body=file.read_bytes(), content_type=MEDIA_TYPES[file.suffix])
        elif request.method == "POST":
            self._created(route, parts, request)
        elif path == f"/v1/fine_tuning/jobs/{JOB_ID}":
            fulfill_json(route, self.job)
        elif parts[:2] == ["fine_tuning", "jobs"]:  # events (polled) and checkpoints
            if "stream" in query:
                fulfill_json(route, {"error": {"message": "no stream", "type":
                                             "invalid_request_error", "param": "stream",
                                             "code": "unknown_parameter"}}, status=400)
            else:
                fulfill_json(route, _page([]))
        elif parts[0] == "files" and parts[-1] == "content":
            route.fulfill(status=200, content_type="application/octet-stream",
                          body=self.validation_text)
        elif parts == ["evals"]:
            fulfill_json(route, _page(list(reversed(self.evals.values()))))
        elif len(parts) == 2 and parts[0] == "evals":
            fulfill_json(route, self.evals[parts[1]])
        elif len(parts) == 3 and parts[2] == "runs":
            runs = self.runs.get(parts[1], [])
            fulfill_json(route, _page(list(reversed(runs)) if query.get("order") == ["desc"]
                                    else runs))
        elif len(parts) == 4:
            fulfill_json(route, next(r for r in self.runs[parts[1]] if r["id"] == parts[3]))
        elif parts[-1] == "output_items":
            self.item_queries.append(query)
            fulfill_json(route, self._items(parts[3], query))
        else:
            fulfill_json(route, {"error": {"message": f"No route {path}", "type":
                                         "invalid_request_error", "param": None,
                                         "code": "not_found"}}, status=404)

    def _items(self, run_id: str, query: dict[str, list[str]]) -> dict[str, Any]:
        items = [item for item in self.items.get(run_id, [])
                 if item["status"] == query.get("status", [item["status"]])[0]]
        if "after" in query:
            position = [item["id"] for item in items].index(query["after"][0])
            items = items[position + 1:]
        limit = int(query["limit"][0])
        page = _page(items[:limit])
        page["has_more"] = len(items) > limit
        return page

    def _created(self, route: Any, parts: list[str], request: Any) -> None:
        if parts == ["files"]:
            body = request.post_data_buffer or b""
            self.uploaded.append(body.decode(errors="replace"))
            self.posted.append(("files", None))
            fulfill_json(route, {"object": "file", "id": "file-0ValidationItems000000",
                               "purpose": "user_data", "filename": "items.jsonl", "bytes": 1,
                               "created_at": 0, "status": "processed", "status_details": None})
            return
        body = json.loads(request.post_data or "null")
        self.posted.append(("/".join(parts), body))
        if parts[-1] == "cancel":
            canceled = next(r for r in self.runs[parts[1]] if r["id"] == parts[3])
            canceled["status"] = "canceled"
            fulfill_json(route, canceled)
        elif parts == ["evals"]:
            made = {"object": "eval", "id": OTHER_EVAL, "created_at": 0, "metadata": body["metadata"],
                    "name": body["name"], "data_source_config": body["data_source_config"],
                    "testing_criteria": [{"id": "sim-1", **body["testing_criteria"][0]}]}
            self.evals[OTHER_EVAL] = made
            fulfill_json(route, made, status=201)
        else:
            made = run(f"evalrun_{len(self.posted):024d}", body["data_source"]["model"], (0, 0),
                       status="queued")
            made["eval_id"] = parts[1]
            self.runs.setdefault(parts[1], []).append(made)
            fulfill_json(route, made, status=201)


def _page(data: list[dict[str, Any]]) -> dict[str, Any]:
    return {"object": "list", "data": data, "has_more": False,
            "first_id": data[0]["id"] if data else "", "last_id": data[-1]["id"] if data else ""}


class Tab(DashboardTab):
    """The evals pages."""

    def open(self, fragment: str) -> Any:
        return self.goto(fragment)


@pytest.fixture
def api() -> FakeEvalApi:
    fake = FakeEvalApi()
    fake.evals[EVAL_ID] = {"object": "eval", "id": EVAL_ID, "name": "zorb facts",
                           "created_at": int(time.time()), "metadata": None,
                           "data_source_config": {"type": "custom", "schema": {}},
                           "testing_criteria": CRITERIA}
    fake.runs[EVAL_ID] = [run("evalrun_base", BASE, (2, 5), created=100),
                          run("evalrun_tuned", TUNED, (40, 42), created=200)]
    fake.items["evalrun_tuned"] = [output_item("evalrun_tuned", i) for i in range(ITEMS)]
    return fake


@pytest.fixture
def tab(browser: Any, api: FakeEvalApi) -> Iterator[Tab]:
    opened = Tab(browser, api)
    yield opened
    opened.close()


def test_the_evals_list_leads_to_an_eval(tab: Tab) -> None:
    page = tab.open("#/evals")
    row = page.locator(f"table.evals tr[data-eval-id={EVAL_ID}]")
    row.wait_for()
    assert "zorb facts" in row.inner_text() and "exact, close" in row.inner_text()
    assert page.locator("header nav a.current").inner_text() == "Evals"
    row.locator("a").click()
    page.wait_for_selector(".eval-view table.runs-compare th[data-run-id]")
    assert page.url.endswith(f"#/evals/{EVAL_ID}")


def test_an_evals_runs_side_by_side_with_each_criterions_pass_rate(
        tab: Tab, artifacts: Path) -> None:
    page = tab.open(f"#/evals/{EVAL_ID}")
    page.wait_for_selector(".eval-view[data-runs='2']")
    columns = page.locator("table.runs-compare thead th[data-run-id]")
    assert [columns.nth(i).get_attribute("data-run-id") for i in range(2)] == [
        "evalrun_base", "evalrun_tuned"]  # the older run on the left

    def rate(criterion: str, run_id: str) -> str:
        return page.locator(f"tr[data-criterion='{criterion}'] td[data-run-id={run_id}]").inner_text()

    assert rate("exact-1", "evalrun_base") == "4% (2/45)"
    assert rate("exact-1", "evalrun_tuned") == "89% (40/45)"
    assert rate("close-2", "evalrun_tuned") == "93% (42/45)"
    assert "string_check" in page.locator("tr[data-criterion='exact-1'] th").inner_text()
    facts = page.locator("table.runs-compare tbody").inner_text()
    assert "45 (40 passed, 4 failed, 1 errored)" in facts and "completed" in facts
    criteria = page.locator("ul.criteria").inner_text()
    assert "rouge_l ≥ 0.6" in criteria and "eq {{ item.answer }}" in criteria
    page.screenshot(path=str(artifacts / "dashboard-evals-compare.png"), full_page=True)
    page.click("th[data-run-id=evalrun_tuned] a")
    page.wait_for_selector(".run-view[data-status=completed]")
    assert page.url.endswith(f"#/evals/{EVAL_ID}/runs/evalrun_tuned")


def test_a_runs_items_are_paged_filtered_and_show_scores_and_errors(
        tab: Tab, api: FakeEvalApi, artifacts: Path) -> None:
    page = tab.open(f"#/evals/{EVAL_ID}/runs/evalrun_tuned")
    page.wait_for_selector(".run-view[data-page='1'] table.output-items tbody tr")
    rows = page.locator("table.output-items tbody tr")
    assert rows.count() == 20
    assert page.locator(".page-text").inner_text() == "items 1–20"
    assert page.locator("button.prev-page").is_disabled()
    summary = page.locator(".summary").inner_text()
    assert "45 graded: 40 passed, 4 failed, 1 errored" in summary and "file-items" in summary
    assert "89% (40/45)" in page.locator("table.criteria-rates").inner_text()
    assert "1200" in page.locator("table.usage").inner_text()
    failed_item = page.locator("tr[data-item='7']")
    assert "model_error_500: the model process died" in failed_item.inner_text()
    assert "✗ exact: 0.000" in failed_item.inner_text()
    assert "close: invalid_variable_error" in page.locator("tr[data-item='9'] .item-errors").inner_text()
    good = page.locator("tr[data-item='4']").inner_text()
    assert "Zorb-4?" in good and "blue4" in good and "✓ close: 0.900" in good
    page.screenshot(path=str(artifacts / "dashboard-evals-run.png"), full_page=True)

    page.click("button.next-page")
    page.wait_for_selector(".run-view[data-page='2']")
    assert page.locator(".page-text").inner_text() == "items 21–40"
    assert rows.first.get_attribute("data-item") == "20"
    page.click("button.next-page")
    page.wait_for_selector(".run-view[data-page='3']")
    assert rows.count() == 5 and page.locator("button.next-page").is_disabled()
    page.click("button.prev-page")
    page.wait_for_selector(".run-view[data-page='2']")
    assert rows.first.get_attribute("data-item") == "20"

    page.select_option("select[name=item-status]", "fail")
    page.wait_for_selector(".run-view[data-page='1']")
    page.wait_for_function(
        "() => [...document.querySelectorAll('table.output-items tbody tr')]"
        ".every((row) => row.dataset.status === 'fail')")
    assert rows.first.get_attribute("data-item") == "1"
    assert api.item_queries[-1]["status"] == ["fail"]


def test_a_succeeded_jobs_page_evaluates_its_model_on_an_evals_items(
        tab: Tab, api: FakeEvalApi) -> None:
    api.job = job("succeeded", created=int(time.time()) - 60, fine_tuned_model=TUNED)
    page = tab.open(f"#/jobs/{JOB_ID}")
    page.wait_for_selector(f"select[name=eval-choice] option[value={EVAL_ID}]", state="attached")
    # No validation file: only the evals are offered.
    assert page.locator("select[name=eval-choice] option[value=validation]").count() == 0
    page.select_option("select[name=eval-choice]", EVAL_ID)
    page.click("button.evaluate")
    page.wait_for_url(f"**/#/evals/{EVAL_ID}")
    page.wait_for_selector(".eval-view[data-runs='3']")
    [(path, body)] = api.posted
    assert path == f"evals/{EVAL_ID}/runs"
    newest = api.runs[EVAL_ID][1]["data_source"]  # the tuned run's, the newest completions run
    assert body == {"name": TUNED, "data_source": {**newest, "model": TUNED}}


def test_a_jobs_validation_file_becomes_an_eval_of_the_model_and_its_base(
        tab: Tab, api: FakeEvalApi, artifacts: Path) -> None:
    api.job = job("succeeded", created=int(time.time()) - 60, fine_tuned_model=TUNED,
                  validation_file="file-0DashboardValidation0000")
    api.validation_text = "".join(json.dumps(row) + "\n" for row in VALIDATION)
    page = tab.open(f"#/jobs/{JOB_ID}")
    page.wait_for_selector("select[name=eval-choice] option[value=validation]", state="attached")
    assert page.locator("select[name=eval-choice]").input_value() == "validation"
    page.locator(".evaluate-card").screenshot(path=str(artifacts / "dashboard-evals-button.png"))
    page.click("button.evaluate")
    page.wait_for_url(f"**/#/evals/{OTHER_EVAL}")
    page.wait_for_selector(".eval-view[data-runs='2']")
    paths = [path for path, _ in api.posted]
    assert paths == ["files", "evals", f"evals/{OTHER_EVAL}/runs", f"evals/{OTHER_EVAL}/runs"]
    created = api.posted[1][1]
    assert created["testing_criteria"] == [default_criterion()]
    assert created["metadata"] == {"fine_tuning_job": JOB_ID,
                                   "validation_file": "file-0DashboardValidation0000"}
    assert [body["data_source"]["model"] for _, body in api.posted[2:]] == [TUNED, BASE]
    # The uploaded items are those `tunegate eval --job` makes of the same file.
    [upload] = api.uploaded
    lines = [line for line in upload.splitlines() if line.startswith('{"item"')]
    assert [json.loads(line)["item"] for line in lines] == validation_items(
        api.validation_text.splitlines())
    assert len(lines) == 3


def test_a_running_run_can_be_canceled_from_its_page(tab: Tab, api: FakeEvalApi) -> None:
    api.runs[EVAL_ID][1]["status"] = "in_progress"
    page = tab.open(f"#/evals/{EVAL_ID}/runs/evalrun_tuned")
    page.wait_for_selector(".run-view[data-status=in_progress]")
    page.click("button.action-cancel")
    page.wait_for_selector(".run-view[data-status=canceled]")
    assert [path for path, _ in api.posted] == [f"evals/{EVAL_ID}/runs/evalrun_tuned/cancel"]
    assert page.locator("button.action-cancel").is_disabled()
