"""``multi``: the formula language (parsed, never eval'd) and its results against values worked
out by hand, in each of OpenAI's three shapes of ``graders``."""

from __future__ import annotations

import math
from typing import Any

import pytest

from tunegate.graders import InvalidGrader, Sample, grade, parse_grader
from tunegate.graders.formula import FormulaError, MathError, evaluate, parse

VALUES = {"a": 0.25, "b": 0.5, "c": 4.0}


@pytest.mark.parametrize(("text", "expected"), [
    ("0.5 * a + 0.5 * b", 0.375),
    ("a + b * c", 2.25),
    ("(a + b) * c", 3.0),
    ("c / b / 2", 4.0),
    ("c - b - a", 3.25),
    ("2 ^ 3 ^ 2", 512.0),          # right-associative
    ("-c ^ 2", -16.0),             # the power binds tighter than the minus
    ("c ^ -1", 0.25),
    ("--a", 0.25),
    ("min(a, b, c)", 0.25),
    ("max(a, b) + min(c)", 4.5),
    ("abs(a - b)", 0.25),
    ("floor(c * 0.9) + ceil(a)", 4.0),
    ("sqrt(c) * exp(0) + log(1)", 2.0),
    ("log(exp(b))", 0.5),
    ("1e-1 * c + .5", 0.9),
    ("  a\t+\nb ", 0.75),
])
def test_formulas_match_hand_computed_values(text: str, expected: float) -> None:
    assert evaluate(parse(text), VALUES) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("text", [
    "", "a +", "(a + b", "a + b)", "a b", "a $ b", "foo(a)", "abs(a, b)", "min()", "__import__",
    "a.b", "a[0]", "'a'", "(" * 3000 + "a" + ")" * 3000, "lambda: 1",
])
def test_what_is_not_a_formula_is_refused(text: str) -> None:
    if text in ("__import__",):
        assert parse(text) is not None  # a plain variable name, nothing runs
        return
    with pytest.raises(FormulaError):
        parse(text)


@pytest.mark.parametrize("text", ["a / 0", "sqrt(-1)", "log(0)", "10 ^ 1000", "(-8) ^ 0.5"])
def test_a_formula_without_a_value_raises_math_error(text: str) -> None:
    with pytest.raises(MathError):
        evaluate(parse(text), VALUES)


def _check(name: str, reference: str) -> dict[str, Any]:
    return {"type": "string_check", "name": name, "input": "{{sample.output_text}}",
            "reference": reference, "operation": "eq"}


def _similar(name: str) -> dict[str, Any]:
    return {"type": "text_similarity", "name": name, "input": "{{sample.output_text}}",
            "reference": "{{item.answer}}", "evaluation_metric": "rouge_1"}


ITEM = {"answer": "the cat sat"}
SAMPLE = Sample("the cat")  # rouge_1 F = 2 * (1 * 2/3) / (1 + 2/3) = 0.8


def test_a_map_of_graders_uses_its_keys() -> None:
    grader = parse_grader({"type": "multi", "name": "m", "calculate_output": "2 * x + y ^ 2",
                           "graders": {"x": _check("ignored", "the cat"), "y": _similar("also")}})
    result = grade(grader, SAMPLE, ITEM)
    assert result.sub_scores == pytest.approx({"x": 1.0, "y": 0.8})
    assert result.score == pytest.approx(2 * 1.0 + 0.8 ** 2)


def test_a_list_of_graders_uses_their_names() -> None:
    grader = parse_grader({"type": "multi", "name": "m",
                           "calculate_output": "0.5 * similar + 0.5 * exact",
                           "graders": [_similar("similar"), _check("exact", "no")]})
    result = grade(grader, SAMPLE, ITEM)
    assert result.sub_scores == pytest.approx({"similar": 0.8, "exact": 0.0})
    assert result.score == pytest.approx(0.4)


def test_one_grader_uses_its_name() -> None:
    grader = parse_grader({"type": "multi", "name": "m", "calculate_output": "1 - sim",
                           "graders": _similar("sim")})
    assert grade(grader, SAMPLE, ITEM).score == pytest.approx(0.2)


def test_a_failing_part_fails_the_whole_with_its_flag() -> None:
    grader = parse_grader({"type": "multi", "name": "m", "calculate_output": "a + b",
                           "graders": {"a": _check("a", "{{item.missing}}"),
                                       "b": _similar("b")}})
    result = grade(grader, SAMPLE, ITEM)
    assert result.score == 0
    assert result.errors["invalid_variable_error"] is True
    assert result.sub_scores["b"] == pytest.approx(0.8)


def test_a_formula_without_a_value_is_other_error() -> None:
    grader = parse_grader({"type": "multi", "name": "m", "calculate_output": "1 / a",
                           "graders": {"a": _check("a", "nope")}})
    result = grade(grader, SAMPLE, ITEM)
    assert (result.score, result.errors["other_error"]) == (0.0, True)


@pytest.mark.parametrize(("spec", "param"), [
    ({"graders": {"a": _check("a", "x")}, "calculate_output": "a +"},
     "grader.calculate_output"),
    ({"graders": {"a": _check("a", "x")}, "calculate_output": "a + b"},
     "grader.calculate_output"),
    ({"graders": [_check("a", "x"), _check("a", "y")], "calculate_output": "a"},
     "grader.graders"),
    ({"graders": {"a": {"type": "multi", "name": "in", "graders": _check("a", "x"),
                        "calculate_output": "a"}}, "calculate_output": "a"},
     "grader.graders.a.type"),
    ({"graders": [_check("a", "x"), {**_check("b", "x"), "operation": "is"}],
      "calculate_output": "a"}, "grader.graders[1].operation"),
    ({"graders": {}, "calculate_output": "1"}, "grader.graders"),
    ({"graders": {"a": _check("a", "x")}, "calculate_output": 3}, "grader.calculate_output"),
])
def test_a_bad_multi_names_its_field(spec: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidGrader) as raised:
        parse_grader({"type": "multi", "name": "m", **spec})
    assert raised.value.param == param


def test_no_formula_reaches_python() -> None:
    """Names that would mean something to eval() are plain variables here, unknown ones."""
    with pytest.raises(InvalidGrader, match="__import__"):
        parse_grader({"type": "multi", "name": "m", "calculate_output": "__import__",
                      "graders": {"a": _check("a", "x")}})
    assert math.isfinite(evaluate(parse("a"), {"a": 1}))
