"""``/v1/fine_tuning/alpha/graders/run`` and ``/validate`` in process (responses validated
against openapi.yaml): OpenAI's shapes, the legacy ``reference_answer``, failures inside a 200,
bad graders as 400s naming the field, grader models that do not exist refused up front."""

from __future__ import annotations

from typing import Any

import pytest

from tunegate.graders import ERROR_FLAGS

RUN = "/v1/fine_tuning/alpha/graders/run"
VALIDATE = "/v1/fine_tuning/alpha/graders/validate"
CHECK = {"type": "string_check", "name": "capital", "input": "{{sample.output_text}}",
         "reference": "{{item.reference_answer}}", "operation": "ilike"}


def test_run_answers_openais_shape(client: Any) -> None:
    answer = client.post(RUN, json={"grader": CHECK, "model_sample": "It is PARIS.",
                                    "item": {"reference_answer": "paris"}})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert set(body) == {"reward", "metadata", "sub_rewards",
                         "model_grader_token_usage_per_model"}
    assert body["reward"] == 1.0
    metadata = body["metadata"]
    assert (metadata["name"], metadata["type"]) == ("capital", "string_check")
    assert list(metadata["errors"]) == list(ERROR_FLAGS)
    assert not any(metadata["errors"].values())
    assert metadata["scores"] == {"capital": 1.0}
    assert metadata["token_usage"] is None and metadata["sampled_model_name"] is None
    assert metadata["execution_time"] >= 0
    assert body["sub_rewards"] == {} and body["model_grader_token_usage_per_model"] == {}


def test_the_older_sdks_reference_answer_becomes_the_item(client: Any) -> None:
    answer = client.post(RUN, json={"grader": CHECK, "model_sample": "paris",
                                    "reference_answer": "Paris"})
    assert answer.json()["reward"] == 1.0


def test_json_samples_fill_output_json(client: Any) -> None:
    grader = {**CHECK, "input": "{{sample.output_json.city}}", "operation": "eq"}
    answer = client.post(RUN, json={"grader": grader, "model_sample": '{"city": "Paris"}',
                                    "item": {"reference_answer": "Paris"}})
    assert answer.json()["reward"] == 1.0


def test_a_graders_failure_is_a_200_with_its_flag(client: Any) -> None:
    answer = client.post(RUN, json={"grader": CHECK, "model_sample": "x", "item": {}})
    assert answer.status_code == 200
    assert answer.json()["reward"] == 0
    assert answer.json()["metadata"]["errors"]["invalid_variable_error"] is True
    python = {"type": "python", "name": "p", "source": "def grade(sample, item):\n    1/0\n"}
    answer = client.post(RUN, json={"grader": python, "model_sample": "x"})
    errors = answer.json()["metadata"]["errors"]
    assert errors["python_grader_runtime_error"] is True
    assert "ZeroDivisionError" in errors["python_grader_runtime_error_details"]


def test_multi_reports_its_parts(client: Any) -> None:
    grader = {"type": "multi", "name": "blend", "calculate_output": "0.25 * exact + 0.75 * py",
              "graders": {"exact": {**CHECK, "operation": "eq"},
                          "py": {"type": "python", "name": "py",
                                 "source": "def grade(sample, item):\n    return 0.5\n"}}}
    body = client.post(RUN, json={"grader": grader, "model_sample": "Paris",
                                  "item": {"reference_answer": "Paris"}}).json()
    assert body["reward"] == pytest.approx(0.25 + 0.375)
    assert body["sub_rewards"] == {"exact": 1.0, "py": 0.5}
    assert body["metadata"]["scores"]["blend"] == pytest.approx(0.625)


@pytest.mark.parametrize(("grader", "param"), [
    ({"type": "regex", "name": "x"}, "grader.type"),
    ({**CHECK, "operation": "contains"}, "grader.operation"),
    ({**CHECK, "reference": "{{ answer }}"}, "grader.reference"),
    ({"type": "text_similarity", "name": "t", "input": "a", "reference": "b"},
     "grader.evaluation_metric"),
    ({"type": "python", "name": "p", "source": "x = 1\n"}, "grader.source"),
    ({"type": "multi", "name": "m", "graders": {"a": CHECK}, "calculate_output": "a * (b"},
     "grader.calculate_output"),
    ({"type": "label_model", "name": "l", "model": "m", "input": [], "labels": ["a"],
      "passing_labels": ["a"]}, "grader.type"),
    ({"type": "score_model", "name": "s", "model": "no-such-model",
      "input": [{"role": "user", "content": "{{sample.output_text}}"}]}, "grader.model"),
    ({"type": "multi", "name": "m", "calculate_output": "tone",
      "graders": {"tone": {"type": "label_model", "name": "l", "model": "no-such-model",
                           "input": [{"role": "user", "content": "x"}], "labels": ["a"],
                           "passing_labels": ["a"]}}}, "grader.graders.tone.model"),
    ("not an object", "grader"),
])
def test_a_bad_grader_is_a_400_naming_its_field(client: Any, grader: Any, param: str) -> None:
    for path, body in ((RUN, {"grader": grader, "model_sample": "x"}),
                       (VALIDATE, {"grader": grader})):
        answer = client.post(path, json=body)
        assert answer.status_code == 400, (path, answer.text)
        error = answer.json()["error"]
        assert error["param"] == param, error
        assert error["type"] == "invalid_request_error"


def test_validate_echoes_the_grader(client: Any) -> None:
    grader = {"type": "multi", "name": "m", "graders": [CHECK], "calculate_output": "capital",
              "extra_key": "kept"}
    answer = client.post(VALIDATE, json={"grader": grader})
    assert answer.status_code == 200
    assert answer.json() == {"grader": grader}


def test_a_score_model_on_a_served_model_passes_validation(client: Any) -> None:
    grader = {"type": "score_model", "name": "s", "model": "SmolLM2-135M-Instruct",
              "input": [{"role": "user", "content": "{{sample.output_text}}"}]}
    assert client.post(VALIDATE, json={"grader": grader}).status_code == 200


def test_unknown_request_fields_are_refused(client: Any) -> None:
    answer = client.post(RUN, json={"grader": CHECK, "model_sample": "x", "sample": "x"})
    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "unknown_parameter"
