"""The method value: one table of hyperparameters (names, kinds, bounds), the wire shape, and
the contract (openapi.yaml) saying the same bounds."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import yaml

from tunegate.domain.methods import (
    METHODS,
    Choice,
    DpoHyperparameters,
    Integer,
    InvalidHyperparameter,
    Method,
    Number,
    ReinforcementHyperparameters,
    SupervisedHyperparameters,
)
from tunegate.errors import InvalidRequest

ROOT = Path(__file__).resolve().parents[2]


def test_each_method_takes_todays_names() -> None:
    assert SupervisedHyperparameters.names() == ("batch_size", "learning_rate_multiplier",
                                                 "n_epochs")
    assert DpoHyperparameters.names() == ("batch_size", "beta", "learning_rate_multiplier",
                                          "n_epochs")
    assert ReinforcementHyperparameters.names() == (
        "batch_size", "compute_multiplier", "eval_interval", "eval_samples",
        "learning_rate_multiplier", "n_epochs", "reasoning_effort")
    assert set(METHODS) == {"supervised", "dpo", "reinforcement"}


GRADER = {"type": "string_check", "name": "exact", "input": "{{sample.output_text}}",
          "reference": "{{item.answer}}", "operation": "eq"}


def test_a_reinforcement_method_keeps_its_grader_and_echoes_openais_shape() -> None:
    method = Method.from_wire({"type": "reinforcement", "reinforcement": {
        "grader": GRADER, "hyperparameters": {"compute_multiplier": 2, "eval_interval": 3}}})
    wire = method.to_wire()
    assert wire == {"type": "reinforcement", "reinforcement": {
        "grader": GRADER, "response_format": None, "hyperparameters": {
            "batch_size": "auto", "compute_multiplier": 2, "eval_interval": 3,
            "eval_samples": "auto", "learning_rate_multiplier": "auto", "n_epochs": "auto",
            "reasoning_effort": "default"}}}
    assert Method.from_wire(wire) == method
    assert method.resolved({"n_epochs": 2}).grader == GRADER


def test_a_grader_belongs_to_reinforcement_alone() -> None:
    with pytest.raises(InvalidRequest) as missing:
        Method.of("reinforcement", {})
    assert (missing.value.param, missing.value.code) == (
        "method.reinforcement.grader", "missing_grader")
    with pytest.raises(InvalidRequest) as unexpected:
        Method.of("supervised", {}, GRADER)
    assert unexpected.value.code == "unexpected_grader"


@pytest.mark.parametrize(("given", "message"), [
    ({"compute_multiplier": 0.00001}, "compute_multiplier must be a number in (1e-05, 10], "
     "got 1e-05."),
    ({"compute_multiplier": 11}, "compute_multiplier must be a number in (1e-05, 10], got 11."),
    ({"eval_interval": 0}, "eval_interval must be an integer from 1 to 1000000, got 0."),
    ({"reasoning_effort": "xhigh"}, "reasoning_effort must be one of 'default', 'low', "
     "'medium', 'high', got 'xhigh'."),
    ({"reasoning_effort": "auto"}, "reasoning_effort must be one of 'default', 'low', "
     "'medium', 'high', got 'auto'."),
])
def test_reinforcement_values_out_of_bounds_are_refused(given: dict[str, Any],
                                                         message: str) -> None:
    with pytest.raises(InvalidHyperparameter) as raised:
        Method.of("reinforcement", given, GRADER)
    assert raised.value.message == message


@pytest.mark.parametrize(("method", "given", "message"), [
    ("supervised", {"n_epochs": 0}, "n_epochs must be an integer from 1 to 50, got 0."),
    ("supervised", {"n_epochs": 51}, "n_epochs must be an integer from 1 to 50, got 51."),
    ("supervised", {"n_epochs": 2.5}, "n_epochs must be an integer from 1 to 50, got 2.5."),
    ("supervised", {"batch_size": 257}, "batch_size must be an integer from 1 to 256, got 257."),
    ("supervised", {"batch_size": True},
     "batch_size must be an integer from 1 to 256, got True."),
    ("supervised", {"learning_rate_multiplier": 0},
     "learning_rate_multiplier must be a number > 0, got 0."),
    ("supervised", {"learning_rate_multiplier": "x"},
     "learning_rate_multiplier must be a number > 0, got 'x'."),
    ("dpo", {"beta": 0}, "beta must be a number in (0, 2], got 0."),
    ("dpo", {"beta": 2.5}, "beta must be a number in (0, 2], got 2.5."),
    ("dpo", {"beta": True}, "beta must be a number in (0, 2], got True."),
    ("dpo", {"beta": "x"}, "beta must be a number in (0, 2], got 'x'."),
])
def test_a_value_out_of_bounds_cannot_be_built(method: str, given: dict[str, Any],
                                               message: str) -> None:
    with pytest.raises(InvalidHyperparameter) as raised:
        Method.of(method, given)
    name = next(iter(given))
    assert (raised.value.code, raised.value.param, raised.value.message) == (
        "invalid_hyperparameters", f"hyperparameters.{name}", message)
    assert raised.value.status == 400


def test_the_bounds_themselves_are_allowed() -> None:
    method = Method.of("dpo", {"n_epochs": 50, "batch_size": 256, "beta": 2,
                               "learning_rate_multiplier": 1e-6})
    assert method.hyperparameters == DpoHyperparameters(
        batch_size=256, learning_rate_multiplier=1e-6, n_epochs=50, beta=2)


def test_missing_and_null_values_are_auto() -> None:
    method = Method.of("supervised", {"n_epochs": None})
    assert method.to_wire()["supervised"]["hyperparameters"] == {
        "batch_size": "auto", "learning_rate_multiplier": "auto", "n_epochs": "auto"}
    assert Method() == method  # the default method is an all-"auto" supervised one


def test_a_name_the_method_does_not_take_is_refused() -> None:
    with pytest.raises(InvalidHyperparameter) as raised:
        Method.of("supervised", {"beta": 0.1})
    assert raised.value.param == "hyperparameters.beta"
    assert "supervised fine-tuning has no hyperparameter 'beta'" in raised.value.message


def test_an_unknown_method_type_is_refused() -> None:
    with pytest.raises(InvalidRequest) as raised:
        Method.of("ppo")
    assert (raised.value.code, raised.value.param) == ("unsupported_method", "method.type")


@pytest.mark.parametrize("method", [
    Method(),
    Method.of("supervised", {"n_epochs": 3, "learning_rate_multiplier": 2}),
    Method.of("dpo", {"beta": 0.5, "batch_size": 4}),
])
def test_the_wire_shape_round_trips(method: Method) -> None:
    assert Method.from_wire(method.to_wire()) == method
    assert method.to_wire()["type"] == method.type


def test_resolving_keeps_the_type_and_checks_the_values() -> None:
    method = Method.of("dpo", {"n_epochs": 2})
    resolved = method.resolved({"n_epochs": 2, "batch_size": 1,
                                "learning_rate_multiplier": 0.5, "beta": 0.1})
    assert resolved.type == "dpo"
    assert resolved.to_wire()["dpo"]["hyperparameters"] == {
        "batch_size": 1, "beta": 0.1, "learning_rate_multiplier": 0.5, "n_epochs": 2}
    with pytest.raises(InvalidHyperparameter):
        method.resolved({"batch_size": 0})


def test_the_deprecated_top_level_field_mirrors_the_shared_values() -> None:
    method = Method.of("dpo", {"beta": 0.5, "n_epochs": 2})
    assert method.hyperparameters.shared_wire() == {
        "batch_size": "auto", "learning_rate_multiplier": "auto", "n_epochs": 2}


def _bounds_in_the_contract(schema: dict[str, Any], schemas: dict[str, Any]) -> dict[str, Any]:
    """The numeric branch of an ``Auto*`` schema (``oneOf: [auto, number]``)."""
    target = schemas[schema["$ref"].rsplit("/", 1)[-1]]
    (branch,) = [one for one in target["oneOf"] if one.get("type") != "string"]
    return branch


def _bounds_in_the_table(kind: object) -> dict[str, Any]:
    if isinstance(kind, Integer):
        return {"type": "integer", "minimum": kind.low, "maximum": kind.high}
    assert isinstance(kind, Number)
    bounds = {"type": "number", "minimum": kind.low, "exclusiveMinimum": True}
    return bounds if kind.high == math.inf else {**bounds, "maximum": kind.high}


@pytest.mark.parametrize("method", sorted(METHODS))
def test_openapi_declares_the_same_names_and_bounds(method: str) -> None:
    schemas = yaml.safe_load((ROOT / "openapi.yaml").read_text())["components"]["schemas"]
    declared = schemas[f"{method.capitalize()}Hyperparameters"]["properties"]
    kinds = METHODS[method].kinds()
    assert set(declared) == set(kinds)
    for name, kind in kinds.items():
        if isinstance(kind, Choice):
            assert tuple(declared[name]["enum"]) == kind.values, name
            continue
        assert _bounds_in_the_contract(declared[name], schemas) == _bounds_in_the_table(kind), name


def test_a_resolved_name_the_method_does_not_take_is_refused() -> None:
    with pytest.raises(InvalidHyperparameter) as raised:
        Method().resolved({"beta": 0.1})
    assert raised.value.param == "hyperparameters.beta"
