"""A reinforcement job through the worker with a scripted trainer (``ScriptedExecutor``): the
trainer's spec carries the grader endpoint, the job's eval is created when it starts, each
step's validation answers become one completed run of it (visible through the Evals API's use
cases, recorded once), and the metrics events carry the rewards and a few training answers.
The real trainer's run is rft-train's end-to-end test."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest
from openai.types import EvalRetrieveResponse
from openai.types.evals import RunRetrieveResponse
from openai.types.evals.runs import OutputItemRetrieveResponse

from tests.helpers import service_create_job, service_upload
from tests.worker.scripted import ScriptedExecutor
from tests.worker.test_worker import save_tiny_tokenizer
from tunegate.api.app import build_service
from tunegate.api.service import Service
from tunegate.domain.catalog import EMBEDDED_MODEL_ID
from tunegate.domain.jobs import JobStatus
from tunegate.settings import Settings
from tunegate.training.messages import HyperparametersResolved, StepMetrics, graded_sample
from tunegate.worker.job_evals import JobEvals, job_eval_id
from tunegate.worker.loop import Worker

GRADER = {"type": "string_check", "name": "exact", "input": "{{sample.output_text}}",
          "reference": "{{item.answer}}", "operation": "eq"}
METHOD = {"type": "reinforcement", "reinforcement": {"grader": GRADER}}


def rft_lines(count: int) -> bytes:
    return "".join(json.dumps({"messages": [{"role": "user", "content": f"{n} + {n}?"}],
                               "answer": str(2 * n)}) + "\n" for n in range(count)).encode()


def sample(split: str, line: int, text: str, reward: float | None) -> dict[str, Any]:
    return graded_sample(split, line, text, reward,
                         error=None if reward is not None else "python_error")


STEPS = [
    StepMetrics(1, 2, 100, {"train_reward_mean": 0.25, "train_reward_std": 0.4},
                samples=[sample("train", 3, "4", 1.0), sample("train", 3, "5", 0.0)]),
    StepMetrics(2, 2, 200, {"train_reward_mean": 0.5, "valid_reward_mean": 0.5},
                samples=[sample("valid", 1, "0", 1.0), sample("valid", 2, "3", 0.0),
                         sample("valid", 3, "?", None)]),
]


@pytest.fixture
def service(settings: Settings) -> Service:
    return build_service(replace(settings, eval_api_key="sk-for-graders"))


def trained(service: Service, executor: ScriptedExecutor) -> str:
    job_id = service_create_job(service, service_upload(service, rft_lines(12)), method=METHOD,
                                validation_file=service_upload(service, rft_lines(3)))
    worker = Worker(service, executor=executor.executor())
    assert worker.run_once() and worker.run_once()  # validated; trained
    assert service.jobs.get("default", job_id).status is JobStatus.SUCCEEDED
    return job_id


def test_the_trainer_is_given_the_endpoint_of_the_grader_models(service: Service) -> None:
    executor = ScriptedExecutor()
    trained(service, executor)
    [spec] = executor.specs
    assert spec.grader_endpoint == service.settings.eval_base_url
    assert spec.grader_api_key == "sk-for-graders"
    assert spec.method.grader == GRADER


def test_the_trainer_is_given_the_python_graders_limits_of_the_settings(
        settings: Settings) -> None:
    limited = build_service(replace(settings, python_grader_seconds=7.5,
                                    python_grader_memory_mb=300))
    executor = ScriptedExecutor()
    trained(limited, executor)
    [spec] = executor.specs
    assert (spec.python_grader_seconds, spec.python_grader_memory_mb) == (7.5, 300)


def test_each_validation_is_a_run_of_the_jobs_eval(service: Service) -> None:
    job_id = trained(service, ScriptedExecutor(messages=STEPS))
    eval_id = job_eval_id(job_id)
    evaluation = service.evals.get("default", eval_id).to_api()
    assert evaluation["metadata"] == {"fine_tuning_job_id": job_id}
    [criterion] = evaluation["testing_criteria"]
    assert {key: criterion[key] for key in GRADER} == GRADER
    [run] = service.eval_runs.list("default", eval_id, after=None, limit=10, order="asc",
                                   status=None).items
    shown = run.to_api()
    assert (shown["name"], shown["status"]) == ("step 2", "completed")
    assert shown["model"].endswith(":ckpt-step-2")
    assert shown["result_counts"] == {"total": 3, "errored": 1, "failed": 1, "passed": 1}
    items = service.eval_runs.list_items("default", eval_id, run.id, after=None, limit=10,
                                         order="asc", status=None).items
    first = items[0].to_api()
    assert first["datasource_item"] == {
        "messages": [{"role": "user", "content": "0 + 0?"}], "answer": "0"}
    assert first["sample"]["output"] == [{"role": "assistant", "content": "0"}]
    assert first["sample"]["input"] == [{"role": "user", "content": "0 + 0?"}]
    assert [item.to_api()["results"][0]["score"] for item in items] == [1.0, 0.0, 0.0]
    assert items[2].to_api()["results"][0]["error"] == "python_error"
    events = [e.message for e in service.store.list_events(job_id, after=None, limit=50).items]
    assert any(message.startswith(f"Created eval {eval_id}") for message in events)


def test_a_step_recorded_again_adds_no_second_run(service: Service) -> None:
    """A worker taking the job over records the journal's steps again."""
    job_id = trained(service, ScriptedExecutor(messages=STEPS))
    stage_job = service.jobs.get("default", job_id)
    again = JobEvals(service.store, service.storage, report_url="")
    assert not again.record(stage_job, 2, "m", STEPS[1].samples)
    assert again.ensure(stage_job) is None  # it exists already
    runs = service.eval_runs.list("default", job_eval_id(job_id), after=None, limit=10,
                                  order="asc", status=None).items
    assert len(runs) == 1


def test_metrics_events_carry_rewards_and_a_few_training_answers(service: Service) -> None:
    job_id = trained(service, ScriptedExecutor(messages=STEPS))
    metrics = [e for e in service.store.list_events(job_id, after=None, limit=50).items
               if e.type == "metrics"]
    by_step = {event.data["step"]: event for event in metrics if event.data}
    assert by_step[1].message == "Step 1/2: reward mean=0.250"
    assert by_step[2].message == "Step 2/2: reward mean=0.500, validation reward mean=0.500"
    assert by_step[1].data["samples"] == [{"line": 3, "reward": 1.0, "output_text": "4"},
                                          {"line": 3, "reward": 0.0, "output_text": "5"}]
    assert "samples" not in by_step[2].data  # validation answers go to the eval


def test_a_job_without_a_validation_file_has_no_eval(service: Service) -> None:
    job_id = service_create_job(service, service_upload(service, rft_lines(12)), method=METHOD)
    worker = Worker(service, executor=ScriptedExecutor(messages=STEPS).executor())
    assert worker.run_once() and worker.run_once()
    assert service.store.evals.get_eval("default", job_eval_id(job_id)) is None


@pytest.mark.model
def test_reinforcement_files_pass_validation_with_the_tokenizer_on_disk(
        service: Service) -> None:
    """The length check reads chat files; a reinforcement job's prompts are the trainer's."""
    save_tiny_tokenizer(service.settings.model_cache / EMBEDDED_MODEL_ID, converted=True)
    job_id = service_create_job(service, service_upload(service, rft_lines(12)), method=METHOD)
    Worker(service).run_once()
    assert service.jobs.get("default", job_id).status is JobStatus.QUEUED


def test_a_multi_graders_parts_are_the_criteria_a_strict_sdk_reads(service: Service) -> None:
    """OpenAI's SDK types no multi criterion: its parts stand in, scored by their rewards."""
    multi = {"type": "multi", "name": "both", "calculate_output": "0.5 * exact + 0.5 * close",
             "graders": {"exact": GRADER, "close": {
                 "type": "text_similarity", "name": "c", "input": "{{sample.output_text}}",
                 "reference": "{{item.answer}}", "evaluation_metric": "fuzzy_match"}}}
    answers = [graded_sample("valid", 1, "0", 1.0, {"exact": 1.0, "close": 1.0}),
               graded_sample("valid", 2, "3", 0.4, {"exact": 0.0, "close": 0.8})]
    steps = [StepMetrics(1, 1, 10, {"train_reward_mean": 0.5, "valid_reward_mean": 0.7},
                         samples=answers)]
    job_id = service_create_job(
        service, service_upload(service, rft_lines(12)),
        method={"type": "reinforcement", "reinforcement": {"grader": multi}},
        validation_file=service_upload(service, rft_lines(3)))
    worker = Worker(service, executor=ScriptedExecutor(messages=steps).executor())
    assert worker.run_once() and worker.run_once()
    eval_id = job_eval_id(job_id)
    criteria = service.evals.get("default", eval_id).testing_criteria
    assert [(c["type"], c["name"]) for c in criteria] == [("string_check", "exact"),
                                                          ("text_similarity", "close")]
    [run] = service.eval_runs.list("default", eval_id, after=None, limit=10, order="asc",
                                   status=None).items
    items = service.eval_runs.list_items("default", eval_id, run.id, after=None, limit=10,
                                         order="asc", status=None).items
    scores = [[(r["score"], r["passed"], r["reward"]) for r in item.results] for item in items]
    assert scores == [[(1.0, True, 1.0), (1.0, True, 1.0)],
                      [(0.0, False, 0.4), (0.8, False, 0.4)]]
    assert run.to_api()["result_counts"] == {"total": 2, "errored": 0, "failed": 1, "passed": 1}
    # What a strict SDK client checks (it validates every answer against these types).
    EvalRetrieveResponse.model_validate(service.evals.get("default", eval_id).to_api())
    RunRetrieveResponse.model_validate(run.to_api())
    for item in items:
        OutputItemRetrieveResponse.model_validate(item.to_api())


def test_resolved_hyperparameters_replace_auto_in_the_jobs_method(service: Service) -> None:
    resolved = {"n_epochs": 2, "batch_size": 4, "learning_rate_multiplier": 0.3,
                "compute_multiplier": 1.0, "eval_interval": 3, "eval_samples": 1,
                "reasoning_effort": "default", "beta": None}
    job_id = trained(service, ScriptedExecutor(messages=[HyperparametersResolved(resolved)]))
    method = service.jobs.get("default", job_id).to_api()["method"]
    assert method["reinforcement"]["hyperparameters"] == {
        key: value for key, value in resolved.items() if value is not None}
    assert method["reinforcement"]["grader"] == GRADER
