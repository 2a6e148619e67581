"""The graders' interface the API, eval runs and reinforcement rewards rely on: a checked grader,
a score, failures as flags (never exceptions) and the pass rule."""

import pytest

from tunegate.graders import InvalidGrader, Sample, grade, parse_grader, passed


def string_check(operation: str, reference: str = "{{ item.answer }}") -> dict:
    return {"type": "string_check", "name": "s", "input": "{{sample.output_text}}",
            "reference": reference, "operation": operation}


@pytest.mark.parametrize(("operation", "output", "score"), [
    ("eq", "Paris", 1.0), ("eq", "paris", 0.0), ("ne", "Rome", 1.0), ("ne", "Paris", 0.0),
    ("like", "It is Paris.", 1.0), ("like", "It is paris.", 0.0),
    ("ilike", "It is PARIS.", 1.0), ("ilike", "It is Rome.", 0.0),
])
def test_string_check_compares_as_openai_describes(operation: str, output: str,
                                                   score: float) -> None:
    result = grade(parse_grader(string_check(operation)), Sample(output), {"answer": "Paris"})
    assert result.score == score
    assert not result.failed


def test_nested_item_paths_and_json_samples_render() -> None:
    grader = parse_grader({"type": "string_check", "name": "s",
                           "input": "{{ sample.output_json.city }}",
                           "reference": "{{ item.cities[1].name }}", "operation": "eq"})
    item = {"cities": [{"name": "Rome"}, {"name": "Paris"}]}
    assert grade(grader, Sample('{"city": "Paris"}'), item).score == 1.0


def test_a_path_that_names_nothing_is_flagged_not_raised() -> None:
    result = grade(parse_grader(string_check("eq")), Sample("Paris"), {})
    assert result.score == 0.0
    assert result.errors["invalid_variable_error"] is True
    assert not passed(parse_grader(string_check("eq")), result)


@pytest.mark.parametrize(("spec", "param"), [
    ({"type": "nope", "name": "x"}, "grader.type"),
    ({"type": "string_check", "name": "x", "input": "a", "reference": "b"}, "grader.operation"),
    (string_check("contains"), "grader.operation"),
    (string_check("eq", reference="{{ answer }}"), "grader.reference"),
])
def test_a_bad_configuration_names_its_field(spec: dict, param: str) -> None:
    with pytest.raises(InvalidGrader) as raised:
        parse_grader(spec)
    assert raised.value.param == param
