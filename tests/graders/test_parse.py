"""Every grader type's fields are checked at create time; a bad one is an ``InvalidGrader``
naming its dotted path, and a good one of each type parses."""

from __future__ import annotations

from typing import Any

import pytest

from tunegate.graders import InvalidGrader, grader_models, parse_grader
from tunegate.graders.parse import model_fields
from tunegate.graders.python_grader import MAX_SOURCE_BYTES

SIMILAR = {"type": "text_similarity", "name": "t", "input": "{{sample.output_text}}",
           "reference": "{{item.answer}}", "evaluation_metric": "bleu"}
PYTHON = {"type": "python", "name": "p", "source": "def grade(sample, item):\n    return 1\n"}
SCORE = {"type": "score_model", "name": "s", "model": "SmolLM2-135M-Instruct",
         "input": [{"role": "system", "content": "Score 0 to 1."},
                   {"role": "user", "content": [{"type": "input_text",
                                                 "text": "{{sample.output_text}}"}]}],
         "range": [0, 10], "sampling_params": {"temperature": 0, "max_completions_tokens": 64,
                                               "seed": 1, "reasoning_effort": "low"}}
LABEL = {"type": "label_model", "name": "l", "model": "m",
         "input": [{"type": "message", "role": "user",
                    "content": {"type": "input_text", "text": "{{item.q}}"}}],
         "labels": ["good", "bad"], "passing_labels": ["good"]}


@pytest.mark.parametrize("spec", [SIMILAR, PYTHON, SCORE, LABEL])
def test_a_good_grader_of_each_type_parses(spec: dict[str, Any]) -> None:
    assert parse_grader(spec).type == spec["type"]


def _with(spec: dict[str, Any], **changes: Any) -> dict[str, Any]:
    changed = {**spec, **changes}
    return {key: value for key, value in changed.items() if value is not ...}


@pytest.mark.parametrize(("spec", "param"), [
    (_with(SIMILAR, evaluation_metric="rouge_6"), "grader.evaluation_metric"),
    (_with(SIMILAR, input="{{ output_text }}"), "grader.input"),
    (_with(SIMILAR, reference=7), "grader.reference"),
    (_with(SIMILAR, pass_threshold="high"), "grader.pass_threshold"),
    (_with(PYTHON, source="def grade(:\n"), "grader.source"),
    (_with(PYTHON, source="def score(sample, item):\n    return 1\n"), "grader.source"),
    (_with(PYTHON, source="#" * (MAX_SOURCE_BYTES + 1)), "grader.source"),
    (_with(PYTHON, source=...), "grader.source"),
    (_with(SCORE, range=[1, 0]), "grader.range"),
    (_with(SCORE, range=[0]), "grader.range"),
    (_with(SCORE, range=["a", "b"]), "grader.range"),
    (_with(SCORE, input=[]), "grader.input"),
    (_with(SCORE, input=[{"role": "robot", "content": "x"}]), "grader.input[0].role"),
    (_with(SCORE, input=[{"role": "user", "content": [{"type": "input_text",
                                                        "text": "{{ itm.x }}"}]}]),
     "grader.input[0].content[0].text"),
    (_with(SCORE, input=[{"role": "user", "content": {"type": "video"}}]),
     "grader.input[0].content"),
    (_with(SCORE, sampling_params={"max_completions_tokens": 0}),
     "grader.sampling_params.max_completions_tokens"),
    (_with(SCORE, sampling_params={"temperature": "hot"}), "grader.sampling_params.temperature"),
    (_with(SCORE, sampling_params={"top_k": 3}), "grader.sampling_params.top_k"),
    (_with(SCORE, model=""), "grader.model"),
    (_with(LABEL, passing_labels=["great"]), "grader.passing_labels"),
    (_with(LABEL, labels=[]), "grader.labels"),
    (_with(LABEL, labels=...), "grader.labels"),
])
def test_a_bad_field_is_named(spec: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidGrader) as raised:
        parse_grader(spec)
    assert raised.value.param == param
    assert param in raised.value.message


def test_python_source_is_compiled_not_run(tmp_path: Any) -> None:
    marker = tmp_path / "ran"
    parse_grader(_with(PYTHON, source=f"open({str(marker)!r}, 'w')\n"
                                      "def grade(sample, item):\n    return 1\n"))
    assert not marker.exists()


def test_the_grader_models_of_a_grader_and_its_parts() -> None:
    multi = {"type": "multi", "name": "m", "calculate_output": "s + l",
             "graders": {"s": SCORE, "l": LABEL, "t": SIMILAR}}
    assert grader_models(parse_grader(multi)) == ["SmolLM2-135M-Instruct", "m"]
    assert grader_models(parse_grader(PYTHON)) == []
    listed = {**multi, "graders": [SIMILAR, LABEL]}
    assert model_fields(parse_grader(multi)) == [("grader.graders.s.model", SCORE["model"]),
                                                 ("grader.graders.l.model", "m")]
    assert model_fields(parse_grader({**listed, "calculate_output": "l"})) == [
        ("grader.graders[1].model", "m")]
