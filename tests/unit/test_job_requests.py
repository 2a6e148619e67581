import pytest

from tunegate.domain.job_requests import check_metadata, method_from_request, seed_for
from tunegate.domain.methods import Method, SupervisedHyperparameters
from tunegate.errors import InvalidRequest


def test_no_method_means_supervised_with_auto_everything() -> None:
    assert method_from_request({}).to_wire() == {"type": "supervised", "supervised": {
        "hyperparameters": {"batch_size": "auto", "learning_rate_multiplier": "auto",
                            "n_epochs": "auto"}}}


def test_deprecated_hyperparameters_fill_the_supervised_method() -> None:
    method = method_from_request({"hyperparameters": {"n_epochs": 4}})
    assert method == Method(SupervisedHyperparameters(n_epochs=4))
    assert method.hyperparameters.batch_size == "auto"


def test_both_places_at_once_is_refused() -> None:
    with pytest.raises(InvalidRequest) as raised:
        method_from_request({"hyperparameters": {"n_epochs": 4}, "method": {
            "type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 2}}}})
    assert raised.value.param == "hyperparameters"
    assert raised.value.code == "misplaced_hyperparameters"


def test_deprecated_hyperparameters_with_dpo_are_refused() -> None:
    with pytest.raises(InvalidRequest) as raised:
        method_from_request({"hyperparameters": {"n_epochs": 4}, "method": {"type": "dpo"}})
    assert (raised.value.param, raised.value.code) == ("hyperparameters",
                                                       "misplaced_hyperparameters")


def test_dpo_keeps_beta_and_lists_names_as_openai_does() -> None:
    method = method_from_request({"method": {"type": "dpo", "dpo": {"hyperparameters": {
        "beta": 0.2}}}})
    wire = method.to_wire()
    assert wire == {"type": "dpo", "dpo": {"hyperparameters": {
        "beta": 0.2, "batch_size": "auto", "learning_rate_multiplier": "auto", "n_epochs": "auto"}}}
    assert list(wire["dpo"]["hyperparameters"]) == [
        "batch_size", "beta", "learning_rate_multiplier", "n_epochs"]


def test_reinforcement_keeps_its_grader_and_response_format() -> None:
    grader = {"type": "string_check", "name": "g", "input": "{{sample.output_text}}",
              "reference": "{{item.answer}}", "operation": "eq"}
    response_format = {"type": "json_schema", "json_schema": {"name": "a", "schema": {}}}
    method = method_from_request({"method": {"type": "reinforcement", "reinforcement": {
        "grader": grader, "response_format": response_format,
        "hyperparameters": {"reasoning_effort": "low"}}}})
    body = method.to_wire()["reinforcement"]
    assert (body["grader"], body["response_format"]) == (grader, response_format)
    assert body["hyperparameters"]["reasoning_effort"] == "low"
    assert body["hyperparameters"]["compute_multiplier"] == "auto"


def test_reinforcement_without_a_grader_is_refused_naming_the_field() -> None:
    with pytest.raises(InvalidRequest) as raised:
        method_from_request({"method": {"type": "reinforcement"}})
    assert raised.value.param == "method.reinforcement.grader"
    assert raised.value.code == "missing_grader"


def test_a_value_out_of_bounds_is_refused_with_the_trainers_words() -> None:
    with pytest.raises(InvalidRequest) as raised:
        method_from_request({"method": {"type": "supervised", "supervised": {
            "hyperparameters": {"n_epochs": 0}}}})
    assert (raised.value.code, raised.value.param) == ("invalid_hyperparameters",
                                                       "hyperparameters.n_epochs")
    assert raised.value.message == "n_epochs must be an integer from 1 to 50, got 0."


def test_metadata_key_length() -> None:
    check_metadata({"k" * 64: "v"})
    with pytest.raises(InvalidRequest):
        check_metadata({"k" * 65: "v"})


def test_seed_is_kept_or_generated() -> None:
    assert seed_for({"seed": 0}) == 0
    assert 0 <= seed_for({}) <= 2_147_483_647
