"""A reinforcement job's request (``method.type = "reinforcement"``): accepted with every reward
grader OpenAI allows, echoed in OpenAI's shape with its hyperparameters ``"auto"``, and each
bad grader a 400 naming the field's path, before anything is stored."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.api.conftest import TestKey
from tests.api.test_isolation import succeed
from tests.helpers import create_job, expect_error, post_job, upload
from tunegate.domain.catalog import EMBEDDED_MODEL_ID

STRING_CHECK = {"type": "string_check", "name": "exact", "input": "{{sample.output_text}}",
                "reference": "{{item.answer}}", "operation": "eq"}
SIMILARITY = {"type": "text_similarity", "name": "close", "input": "{{sample.output_text}}",
              "reference": "{{item.answer}}", "evaluation_metric": "fuzzy_match"}
PYTHON = {"type": "python", "name": "short",
          "source": "def grade(sample, item):\n    return 1.0 if len(sample['output_text']) < 20 "
                    "else 0.0\n"}
SCORE_MODEL = {"type": "score_model", "name": "judge", "model": EMBEDDED_MODEL_ID,
               "input": [{"role": "user", "content": "Score {{sample.output_text}} from 0 to 1."}],
               "range": [0, 1]}
LABEL_MODEL = {"type": "label_model", "name": "label", "model": EMBEDDED_MODEL_ID,
               "input": [{"role": "user", "content": "Is {{sample.output_text}} polite?"}],
               "labels": ["yes", "no"], "passing_labels": ["yes"]}
MULTI = {"type": "multi", "name": "both", "graders": {"exact": STRING_CHECK, "label": LABEL_MODEL},
         "calculate_output": "0.5 * exact + 0.5 * label"}


def reinforcement(grader: Any, **options: Any) -> dict[str, Any]:
    return {"type": "reinforcement", "reinforcement": {"grader": grader, **options}}


@pytest.mark.parametrize("grader", [STRING_CHECK, SIMILARITY, PYTHON, SCORE_MODEL, MULTI],
                         ids=lambda grader: grader["type"])
def test_every_reward_grader_is_accepted_and_echoed(client: Any, grader: dict[str, Any]) -> None:
    job = create_job(client, upload(client), method=reinforcement(grader))
    body = job["method"]["reinforcement"]
    assert job["method"]["type"] == "reinforcement"
    assert body["grader"] == grader
    assert body["response_format"] is None
    assert body["hyperparameters"] == {
        "batch_size": "auto", "compute_multiplier": "auto", "eval_interval": "auto",
        "eval_samples": "auto", "learning_rate_multiplier": "auto", "n_epochs": "auto",
        "reasoning_effort": "default"}
    assert client.get(f"/v1/fine_tuning/jobs/{job['id']}").json()["method"] == job["method"]


def test_hyperparameters_and_response_format_are_echoed_as_given(client: Any) -> None:
    response_format = {"type": "json_schema",
                       "json_schema": {"name": "answer", "schema": {"type": "object"}}}
    hyperparameters = {"compute_multiplier": 2.5, "eval_interval": 3, "eval_samples": 2,
                       "reasoning_effort": "high", "batch_size": 4}
    job = create_job(client, upload(client), method=reinforcement(
        STRING_CHECK, response_format=response_format, hyperparameters=hyperparameters))
    body = job["method"]["reinforcement"]
    assert body["response_format"] == response_format
    assert {key: body["hyperparameters"][key] for key in hyperparameters} == hyperparameters


@pytest.mark.parametrize(("grader", "param", "says"), [
    ({"type": "string_check", "name": "g", "input": "{{sample.output_text}}",
      "reference": "x", "operation": "equals"},
     "method.reinforcement.grader.operation", "operation"),
    ({"type": "string_check", "name": "g", "reference": "x", "operation": "eq"},
     "method.reinforcement.grader.input", "required"),
    ({"type": "nope", "name": "g"}, "method.reinforcement.grader.type", "nope"),
    ({"type": "python", "name": "g", "source": "def grade(:"},
     "method.reinforcement.grader.source", "source"),
    ({**MULTI, "calculate_output": "exact +"},
     "method.reinforcement.grader.calculate_output", "calculate_output"),
    ({**MULTI, "graders": {"exact": {**STRING_CHECK, "operation": "x"}}},
     "method.reinforcement.grader.graders.exact.operation", "operation"),
])
def test_a_bad_grader_field_is_a_400_naming_its_path(client: Any, grader: dict[str, Any],
                                                      param: str, says: str) -> None:
    response = post_job(client, training_file=upload(client), method=reinforcement(grader))
    expect_error(client, response, 400, param=param, code="invalid_grader", says=says)
    assert client.get("/v1/fine_tuning/jobs").json()["data"] == []


def test_a_label_model_alone_is_refused_with_what_to_use_instead(client: Any) -> None:
    response = post_job(client, training_file=upload(client), method=reinforcement(LABEL_MODEL))
    error = expect_error(client, response, 400, param="method.reinforcement.grader.type",
                         code="invalid_grader", says="label_model")
    assert "score_model" in error["message"] and "multi" in error["message"]


@pytest.mark.parametrize(("grader", "param"), [
    ({**SCORE_MODEL, "model": "no-such-model"}, "method.reinforcement.grader.model"),
    ({**MULTI, "graders": {"exact": STRING_CHECK,
                           "label": {**LABEL_MODEL, "model": "no-such-model"}}},
     "method.reinforcement.grader.graders.label.model"),
])
def test_a_grader_model_this_server_lacks_is_a_400_at_create(client: Any, grader: dict[str, Any],
                                                             param: str) -> None:
    response = post_job(client, training_file=upload(client), method=reinforcement(grader))
    expect_error(client, response, 400, param=param, code="model_not_found",
                 says="no-such-model")


def test_a_missing_grader_is_a_400(client: Any) -> None:
    response = post_job(client, training_file=upload(client), method={"type": "reinforcement"})
    expect_error(client, response, 400, param="method.reinforcement.grader",
                 code="missing_grader")


def test_the_spec_requires_the_grader_of_a_reinforcement_object(client: Any) -> None:
    response = post_job(client, training_file=upload(client),
                        method={"type": "reinforcement", "reinforcement": {}})
    expect_error(client, response, 400, says="grader")


def test_legacy_hyperparameters_are_refused_for_reinforcement(client: Any) -> None:
    response = post_job(client, training_file=upload(client), method=reinforcement(STRING_CHECK),
                        hyperparameters={"n_epochs": 2})
    expect_error(client, response, 400, param="hyperparameters",
                 code="misplaced_hyperparameters")


def test_reinforcement_continues_a_supervised_fine_tune(client: Any, app: Any,
                                                        tmp_path: Path) -> None:
    """Supervised first, then reinforcement on the ``ft:`` model, as OpenAI's guide does."""
    service = app.state_service
    first = create_job(client, upload(client), suffix="m")
    model, _, _ = succeed(service, first["id"], TestKey("", "default", "org-local"),
                          tmp_path / "first")
    job = create_job(client, upload(client), model=model, method=reinforcement(STRING_CHECK))
    assert (job["model"], job["method"]["type"]) == (model, "reinforcement")
