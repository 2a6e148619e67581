"""The store's evals, runs and output items, on SQLite and PostgreSQL (the ``store`` fixture):
project isolation, paging oldest first, the run's claim and compare-and-set moves, and an output
item recorded once, with the run's totals, only while its worker holds the run."""

from __future__ import annotations

import pytest

from tunegate import ids
from tunegate.domain.evals import Eval, EvalRun, OutputItem, RunStatus, RunTotals, no_error
from tunegate.errors import Conflict
from tunegate.store import SqlStore

PROJECT = "proj-a"
OTHER = "proj-b"


def make_eval(project: str = PROJECT, name: str = "e", at: int = 100) -> Eval:
    return Eval(id=ids.new_id(ids.EVAL), project_id=project, created_at=at, updated_at=at,
                name=name, data_source_config={"type": "custom", "schema": {}},
                testing_criteria=[{"id": "c-1", "type": "string_check", "name": "c"}],
                metadata=None)


def make_run(evaluation: Eval) -> EvalRun:
    return EvalRun(id=ids.new_id(ids.EVAL_RUN), eval_id=evaluation.id,
                   project_id=evaluation.project_id, created_at=1, status=RunStatus.QUEUED,
                   model="m", name="r", data_source={"type": "jsonl"}, metadata=None,
                   error=no_error(), totals=RunTotals(), report_url="http://x/")


def make_item(run: EvalRun, row: int, passed: bool = True, errored: bool = False) -> OutputItem:
    return OutputItem(id=ids.new_id(ids.OUTPUT_ITEM), run_id=run.id, eval_id=run.eval_id,
                      project_id=run.project_id, created_at=2,
                      status="pass" if passed else "fail", datasource_item_id=row,
                      datasource_item={"row": row},
                      results=[{"name": "c-1", "type": "string_check", "score": float(passed),
                                "passed": passed, "sample": None}],
                      sample={}, usage={"m": {"invocation_count": 1, "prompt_tokens": 3,
                                             "completion_tokens": 2, "total_tokens": 5,
                                             "cached_tokens": 0}},
                      errored=errored)


def test_evals_are_private_to_their_project_and_page_oldest_first(store: SqlStore) -> None:
    made = [make_eval() for _ in range(3)]
    for evaluation in made:
        store.evals.add_eval(evaluation)
    store.evals.add_eval(make_eval(OTHER))
    first = store.evals.list_evals(PROJECT, after=None, limit=2, ascending=True)
    assert [e.id for e in first.items] == [made[0].id, made[1].id] and first.has_more
    rest = store.evals.list_evals(PROJECT, after=made[1].id, limit=2, ascending=True)
    assert [e.id for e in rest.items] == [made[2].id] and not rest.has_more
    newest = store.evals.list_evals(PROJECT, after=None, limit=5, ascending=False)
    assert [e.id for e in newest.items] == [e.id for e in reversed(made)]
    assert store.evals.get_eval(OTHER, made[0].id) is None
    assert store.evals.get_eval(None, made[0].id) == made[0]
    assert len(store.evals.list_evals(None, after=None, limit=10, ascending=True).items) == 4


def test_update_and_order_by_updated_at(store: SqlStore) -> None:
    older, newer = make_eval(at=100), make_eval(at=100)
    store.evals.add_eval(older)
    store.evals.add_eval(newer)
    changed = store.evals.update_eval(PROJECT, older.id, {"name": "renamed"}, at=200)
    assert changed is not None and changed.name == "renamed" and changed.updated_at == 200
    assert store.evals.update_eval(OTHER, older.id, {"name": "x"}, at=300) is None
    by_update = store.evals.list_evals(PROJECT, after=None, limit=1, ascending=True,
                                       by_updated=True)
    assert [e.id for e in by_update.items] == [newer.id]
    following = store.evals.list_evals(PROJECT, after=newer.id, limit=5, ascending=True,
                                       by_updated=True)
    assert [e.id for e in following.items] == [older.id]


def test_deleting_an_eval_deletes_its_runs_and_items(store: SqlStore) -> None:
    evaluation = make_eval()
    store.evals.add_eval(evaluation)
    run = make_run(evaluation)
    store.evals.add_run(run)
    assert store.evals.claim_run("w", 1.0) is not None
    assert store.evals.record_item(make_item(run, 0), "w")
    assert not store.evals.delete_eval(OTHER, evaluation.id)
    assert store.evals.delete_eval(PROJECT, evaluation.id)
    assert store.evals.get_run(None, None, run.id) is None
    assert store.evals.recorded_rows(run.id) == set()


def test_a_run_is_claimed_once_and_counts_what_it_records(store: SqlStore) -> None:
    evaluation = make_eval()
    store.evals.add_eval(evaluation)
    run = make_run(evaluation)
    store.evals.add_run(run)
    claimed = store.evals.claim_run("w1", 1.0)
    assert claimed is not None and claimed.status is RunStatus.IN_PROGRESS
    assert store.evals.claim_run("w2", 1.0) is None
    assert not store.evals.record_item(make_item(run, 0), "w2")  # not its run
    assert store.evals.record_item(make_item(run, 0), "w1")
    assert not store.evals.record_item(make_item(run, 0), "w1")  # that row is recorded
    assert store.evals.record_item(make_item(run, 1, passed=False), "w1")
    assert store.evals.record_item(make_item(run, 2, passed=False, errored=True), "w1")
    assert store.evals.recorded_rows(run.id) == {0, 1, 2}
    shown = store.evals.get_run(PROJECT, evaluation.id, run.id)
    assert shown is not None
    api = shown.to_api()
    assert api["result_counts"] == {"total": 3, "errored": 1, "failed": 1, "passed": 1}
    assert api["per_testing_criteria_results"] == [
        {"testing_criteria": "c-1", "passed": 1, "failed": 2}]
    assert api["per_model_usage"] == [{"model_name": "m", "invocation_count": 3,
                                       "prompt_tokens": 9, "completion_tokens": 6,
                                       "total_tokens": 15, "cached_tokens": 0}]
    failed = store.evals.list_items(PROJECT, evaluation.id, run.id, after=None, limit=10,
                                    ascending=True, status="fail")
    assert [item.datasource_item_id for item in failed.items] == [1, 2]
    assert store.evals.finish_run(run.id, "w1", RunStatus.COMPLETED)
    done = store.evals.get_run(None, None, run.id)
    assert done is not None and done.status is RunStatus.COMPLETED and done.worker_id is None


def test_a_released_run_is_claimed_again_and_resumes(store: SqlStore) -> None:
    evaluation = make_eval()
    store.evals.add_eval(evaluation)
    run = make_run(evaluation)
    store.evals.add_run(run)
    store.evals.claim_run("dead", 1.0)
    assert store.evals.record_item(make_item(run, 0), "dead")
    assert [owned.id for owned in store.evals.owned_runs()] == [run.id]
    assert store.evals.disown_run(run.id, "dead")
    again = store.evals.claim_run("alive", 2.0)
    assert again is not None and again.id == run.id and again.totals.total == 1
    assert not store.evals.record_item(make_item(run, 1), "dead")


def test_cancel_is_compare_and_set_and_stops_recording(store: SqlStore) -> None:
    evaluation = make_eval()
    store.evals.add_eval(evaluation)
    run = make_run(evaluation)
    store.evals.add_run(run)
    store.evals.claim_run("w", 1.0)
    canceled = store.evals.cancel_run(PROJECT, evaluation.id, run.id)
    assert canceled is not None and canceled.status is RunStatus.CANCELED
    assert not store.evals.record_item(make_item(run, 0), "w")
    assert not store.evals.finish_run(run.id, "w", RunStatus.COMPLETED)
    with pytest.raises(Conflict):
        store.evals.cancel_run(PROJECT, evaluation.id, run.id)
    assert store.evals.cancel_run(OTHER, evaluation.id, run.id) is None


def test_runs_filter_by_status_and_delete_with_their_items(store: SqlStore) -> None:
    evaluation = make_eval()
    store.evals.add_eval(evaluation)
    first, second = make_run(evaluation), make_run(evaluation)
    store.evals.add_run(first)
    store.evals.add_run(second)
    store.evals.cancel_run(PROJECT, evaluation.id, second.id)
    queued = store.evals.list_runs(PROJECT, evaluation.id, after=None, limit=10,
                                   ascending=True, status="queued")
    assert [run.id for run in queued.items] == [first.id]
    assert store.evals.delete_run(PROJECT, evaluation.id, second.id)
    assert not store.evals.delete_run(PROJECT, evaluation.id, second.id)
    assert store.evals.get_run(PROJECT, evaluation.id, second.id) is None
