"""The Evals API in process (responses validated against openapi.yaml): create and the 400s that
name the field at fault, lists oldest first with string cursors, update, delete, runs and their
checks, cancel (both paths), projects isolating evals like jobs, and gateway mode leaving evals
working. The worker's side of a run is in tests/worker/test_eval_stage.py and, end to end with
the real model, tests/e2e/test_evals_sdk.py."""

from __future__ import annotations

from typing import Any

import pytest

from tests.api.conftest import ALICE, BOB
from tunegate.api.app import create_app
from tunegate.settings import Settings

BASE = "SmolLM2-135M-Instruct"
CRITERION = {"type": "string_check", "name": "exact", "input": "{{ sample.output_text }}",
             "reference": "{{ item.answer }}", "operation": "eq"}
CONFIG = {"type": "custom", "item_schema": {"type": "object", "properties": {
    "question": {"type": "string"}, "answer": {"type": "string"}}}}
ROWS = [{"item": {"question": "2+2?", "answer": "4"}, "sample": {"output_text": "4"}},
        {"item": {"question": "3+3?", "answer": "6"}, "sample": {"output_text": "7"}}]


def create_eval(client: Any, headers: dict[str, str] | None = None, **changes: Any) -> Any:
    body = {"name": "arith", "data_source_config": CONFIG, "testing_criteria": [CRITERION],
            **changes}
    return client.post("/v1/evals", json=body, headers=headers or {})


def jsonl_run(client: Any, eval_id: str, headers: dict[str, str] | None = None) -> Any:
    return client.post(f"/v1/evals/{eval_id}/runs", headers=headers or {}, json={
        "data_source": {"type": "jsonl", "source": {"type": "file_content", "content": ROWS}}})


def error_of(answer: Any, status: int) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    return answer.json()["error"]  # type: ignore[no-any-return]


def test_create_stores_openai_s_forms(client: Any) -> None:
    label = {"type": "label_model", "name": "judge", "model": BASE, "labels": ["yes", "no"],
             "passing_labels": ["yes"], "input": [{"role": "user", "content": "Right?"}]}
    answer = create_eval(client, testing_criteria=[CRITERION, label])
    assert answer.status_code == 201, answer.text
    made = answer.json()
    assert made["object"] == "eval" and made["id"].startswith("eval_")
    assert made["data_source_config"] == {"type": "custom", "schema": {
        "type": "object", "properties": {"item": CONFIG["item_schema"]}, "required": ["item"]}}
    first, second = made["testing_criteria"]
    assert first["id"].startswith("exact-") and len(first["id"]) == len("exact-") + 36
    assert {key: first[key] for key in CRITERION} == CRITERION
    assert second["input"] == [{"type": "message", "role": "user",
                                "content": {"type": "input_text", "text": "Right?"}}]
    assert client.get(f"/v1/evals/{made['id']}").json() == made


@pytest.mark.parametrize(("criteria", "param"), [
    ([{**CRITERION, "operation": "contains"}], "testing_criteria.0.operation"),
    ([CRITERION, {"type": "string_check", "name": "x", "input": "a"}],
     "testing_criteria.1.reference"),
    ([{**CRITERION, "reference": "{{ answer }}"}], "testing_criteria.0.reference"),
    ([{"type": "text_similarity", "name": "t", "input": "a", "reference": "b",
       "evaluation_metric": "bleu"}], "testing_criteria.0.pass_threshold"),
    ([{"type": "score_model", "name": "s", "model": "no-such-model",
       "input": [{"role": "user", "content": "rate"}]}], "testing_criteria.0.model"),
])
def test_a_bad_criterion_is_400_naming_its_field(client: Any, criteria: list[Any],
                                                 param: str) -> None:
    error = error_of(create_eval(client, testing_criteria=criteria), 400)
    assert error["param"] == param, error
    assert client.get("/v1/evals").json()["data"] == []


def test_multi_is_not_an_eval_criterion(client: Any) -> None:
    multi = {"type": "multi", "name": "m", "graders": {"a": CRITERION}, "calculate_output": "a"}
    answer = create_eval(client, testing_criteria=[multi])
    assert answer.status_code == 400  # the contract's enum, or the graders' allowed types


def test_lists_are_oldest_first_with_string_cursors(client: Any) -> None:
    empty = client.get("/v1/evals").json()
    assert empty == {"object": "list", "data": [], "first_id": "", "last_id": "",
                     "has_more": False}
    made = [create_eval(client, name=f"e{i}").json()["id"] for i in range(3)]
    page = client.get("/v1/evals", params={"limit": 2}).json()
    assert [e["id"] for e in page["data"]] == made[:2] and page["has_more"]
    assert page["first_id"] == made[0] and page["last_id"] == made[1]
    rest = client.get("/v1/evals", params={"after": page["last_id"]}).json()
    assert [e["id"] for e in rest["data"]] == made[2:]
    newest = client.get("/v1/evals", params={"order": "desc"}).json()
    assert [e["id"] for e in newest["data"]] == made[::-1]


def test_update_changes_only_name_and_metadata(client: Any) -> None:
    made = create_eval(client).json()
    changed = client.post(f"/v1/evals/{made['id']}", json={"name": "new",
                                                           "metadata": {"k": "v"}}).json()
    assert changed == {**made, "name": "new", "metadata": {"k": "v"}}
    error = error_of(client.post(f"/v1/evals/{made['id']}", json={"testing_criteria": []}), 400)
    assert error["code"] == "unknown_parameter"


def test_unknown_ids_are_404_in_openai_s_envelope(client: Any) -> None:
    made = create_eval(client).json()["id"]
    for path in ("/v1/evals/eval_nope", f"/v1/evals/{made}/runs/evalrun_nope",
                 f"/v1/evals/{made}/runs/evalrun_nope/output_items",
                 "/v1/evals/eval_nope/runs"):
        error = error_of(client.get(path), 404)
        assert set(error) == {"message", "type", "param", "code"}
    assert error_of(client.delete("/v1/evals/eval_nope"), 404)["code"] == "eval_not_found"


def test_a_run_is_queued_with_strict_safe_values(client: Any) -> None:
    eval_id = create_eval(client).json()["id"]
    answer = jsonl_run(client, eval_id)
    assert answer.status_code == 201, answer.text
    run = answer.json()
    assert run["status"] == "queued" and run["model"] == "jsonl"
    assert run["error"] == {"code": "", "message": ""}
    assert run["per_model_usage"] == [] and run["per_testing_criteria_results"] == []
    assert run["result_counts"] == {"total": 0, "errored": 0, "failed": 0, "passed": 0}
    # The run's own page in the dashboard (tunegate/dashboard/evals.js routes it).
    assert run["report_url"].endswith(f"/dashboard/#/evals/{eval_id}/runs/{run['id']}")
    assert run["report_url"].startswith("http://127.0.0.1:")
    assert client.get(f"/v1/evals/{eval_id}/runs/{run['id']}").json() == run
    listed = client.get(f"/v1/evals/{eval_id}/runs", params={"status": "queued"}).json()
    assert [r["id"] for r in listed["data"]] == [run["id"]]
    assert client.get(f"/v1/evals/{eval_id}/runs",
                      params={"status": "completed"}).json()["data"] == []


@pytest.mark.parametrize(("source", "param"), [
    ({"type": "jsonl", "source": {"type": "file_content", "content": [{"sample": {}}]}},
     "data_source.source.content.0"),
    ({"type": "jsonl", "source": {"type": "file_id", "id": "file-nope"}},
     "data_source.source.id"),
    ({"type": "completions", "model": "no-such-model",
      "source": {"type": "file_content", "content": ROWS},
      "input_messages": {"type": "template", "template": [{"role": "user", "content": "x"}]}},
     "data_source.model"),
    ({"type": "completions", "model": BASE, "source": {"type": "file_content", "content": ROWS},
      "input_messages": {"type": "item_reference", "item_reference": "messages"}},
     "data_source.input_messages.item_reference"),
])
def test_a_run_that_cannot_run_is_400_at_create(client: Any, source: dict[str, Any],
                                                param: str) -> None:
    eval_id = create_eval(client).json()["id"]
    error = error_of(client.post(f"/v1/evals/{eval_id}/runs", json={"data_source": source}), 400)
    assert error["param"] == param, error


def test_an_evals_file_feeds_a_run_and_other_purposes_do_not(client: Any) -> None:
    eval_id = create_eval(client).json()["id"]
    lines = "\n".join('{"item": {"question": "q", "answer": "a"}}' for _ in range(3)).encode()
    evals_file = client.post("/v1/files", data={"purpose": "evals"},
                             files={"file": ("e.jsonl", lines)}).json()
    assert evals_file["purpose"] == "user_data"  # strict SDKs' file object has no evals
    other = client.post("/v1/files", data={"purpose": "user_data"},
                        files={"file": ("u.jsonl", lines)}).json()
    source = {"type": "jsonl", "source": {"type": "file_id", "id": evals_file["id"]}}
    assert client.post(f"/v1/evals/{eval_id}/runs",
                       json={"data_source": source}).status_code == 201
    source["source"]["id"] = other["id"]
    error = error_of(client.post(f"/v1/evals/{eval_id}/runs", json={"data_source": source}), 400)
    assert error["code"] == "invalid_file_purpose"


@pytest.mark.parametrize("suffix", ["", "/cancel"])
def test_cancel_on_either_path_then_409(client: Any, suffix: str) -> None:
    eval_id = create_eval(client).json()["id"]
    run_id = jsonl_run(client, eval_id).json()["id"]
    canceled = client.post(f"/v1/evals/{eval_id}/runs/{run_id}{suffix}")
    assert canceled.status_code == 200 and canceled.json()["status"] == "canceled"
    error = error_of(client.post(f"/v1/evals/{eval_id}/runs/{run_id}{suffix}"), 409)
    assert error["code"] == "invalid_run_status"


def test_deleting_runs_and_evals(client: Any) -> None:
    eval_id = create_eval(client).json()["id"]
    run_id = jsonl_run(client, eval_id).json()["id"]
    assert client.delete(f"/v1/evals/{eval_id}/runs/{run_id}").json() == {
        "object": "eval.run.deleted", "deleted": True, "run_id": run_id}
    error_of(client.get(f"/v1/evals/{eval_id}/runs/{run_id}"), 404)
    assert client.delete(f"/v1/evals/{eval_id}").json() == {
        "object": "eval.deleted", "deleted": True, "eval_id": eval_id}
    error_of(client.get(f"/v1/evals/{eval_id}"), 404)


def test_projects_isolate_evals_and_runs(keyed_client: Any) -> None:
    eval_id = create_eval(keyed_client, ALICE.headers).json()["id"]
    run_id = jsonl_run(keyed_client, eval_id, ALICE.headers).json()["id"]
    assert keyed_client.get("/v1/evals", headers=BOB.headers).json()["data"] == []
    for method, path in (("get", f"/v1/evals/{eval_id}"), ("delete", f"/v1/evals/{eval_id}"),
                         ("get", f"/v1/evals/{eval_id}/runs/{run_id}"),
                         ("post", f"/v1/evals/{eval_id}/runs/{run_id}")):
        error_of(getattr(keyed_client, method)(path, headers=BOB.headers), 404)
    error_of(jsonl_run(keyed_client, eval_id, BOB.headers), 404)
    assert keyed_client.get(f"/v1/evals/{eval_id}", headers=ALICE.headers).status_code == 200


def test_gateway_mode_leaves_evals_working(settings: Settings) -> None:
    app = create_app(Settings(data_dir=settings.data_dir, fine_tuning=False),
                     validate_responses=True)
    try:
        with app.test_client() as gateway:
            assert gateway.get("/v1/fine_tuning/jobs").status_code == 501
            assert create_eval(gateway).status_code == 201
    finally:
        app.state_service.inference.close()
