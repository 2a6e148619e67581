"""``score_model`` and ``label_model`` against a scripted grader model (a test double, named
so; the real model answers in tests/e2e/test_graders_sdk.py): what is asked (messages rendered,
the JSON schema, sampling parameters), and how each kind of answer is scored."""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

from tunegate.graders import ModelAnswer, Sample, grade, parse_grader


@dataclass
class FakeGraderModel:
    """Answers each completion with the next scripted text (or raises it)."""

    answers: list[Any]
    asked: list[dict[str, Any]] = field(default_factory=list)

    def complete(self, model: str, messages: Sequence[Mapping[str, Any]], *,
                 response_format: Mapping[str, Any] | None = None,
                 sampling: Mapping[str, Any] | None = None) -> ModelAnswer:
        self.asked.append({"model": model, "messages": list(messages),
                           "response_format": response_format, "sampling": sampling})
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        if isinstance(answer, ModelAnswer):
            return answer
        return ModelAnswer(text=answer, prompt_tokens=10, completion_tokens=5)

    def embed(self, model: str | None, texts: Sequence[str]) -> list[list[float]]:
        raise AssertionError("not asked")

    def exists(self, model: str) -> bool:
        return True


SCORE = {"type": "score_model", "name": "judge", "model": "judge-model", "range": [0, 10],
         "input": [{"role": "system", "content": "Score the answer."},
                   {"role": "user", "content": [
                       {"type": "input_text", "text": "Q: {{item.question}} "},
                       {"type": "input_text", "text": "A: {{sample.output_text}}"}]}],
         "sampling_params": {"temperature": 0, "max_completions_tokens": 80, "seed": 3,
                             "reasoning_effort": "high"}}
LABEL = {"type": "label_model", "name": "tone", "model": "judge-model",
         "input": [{"type": "message", "role": "user",
                    "content": {"type": "input_text", "text": "{{sample.output_text}}"}}],
         "labels": ["positive", "neutral", "negative"], "passing_labels": ["positive"]}


def answer(result: Any) -> str:
    return json.dumps({"steps": [{"description": "read", "conclusion": "ok"}],
                       "result": result})


def score(spec: dict[str, Any], model: FakeGraderModel) -> Any:
    return grade(parse_grader(spec), Sample("Paris"), {"question": "Capital?"}, model)


def test_score_model_asks_with_the_rendered_messages_schema_and_sampling() -> None:
    model = FakeGraderModel([answer(7.5)])
    result = score(SCORE, model)
    assert result.score == 7.5 and not result.failed
    asked = model.asked[0]
    assert asked["model"] == "judge-model"
    assert asked["messages"] == [{"role": "system", "content": "Score the answer."},
                                 {"role": "user", "content": "Q: Capital? A: Paris"}]
    schema = asked["response_format"]["json_schema"]["schema"]
    assert schema["properties"]["result"] == {"type": "number"}
    assert schema["required"] == ["steps", "result"]
    assert asked["sampling"] == {"temperature": 0, "max_completion_tokens": 80, "seed": 3}
    assert result.usage == {"judge-model": {"prompt_tokens": 10, "completion_tokens": 5,
                                            "total_tokens": 15, "cached_tokens": 0}}


@pytest.mark.parametrize(("result", "expected"), [(12, 10.0), (-3, 0.0), (4, 4.0)])
def test_score_model_clips_to_the_range(result: float, expected: float) -> None:
    assert score(SCORE, FakeGraderModel([answer(result)])).score == expected


@pytest.mark.parametrize("text", ['{"steps": [], "result": "high"}', '{"steps": [', "7",
                                  '{"steps": []}', answer(True)])
def test_an_answer_that_is_not_a_number_is_a_parse_error(text: str) -> None:
    result = score(SCORE, FakeGraderModel([text]))
    assert result.score == 0
    assert result.errors["model_grader_parse_error"] is True
    assert result.usage["judge-model"]["total_tokens"] == 15  # the tokens were spent anyway


def test_a_refusal_and_a_failing_model_are_flagged() -> None:
    refusal = ModelAnswer(text="", prompt_tokens=1, completion_tokens=1, refusal="no")
    assert score(SCORE, FakeGraderModel([refusal])).errors["model_grader_refusal_error"]
    failed = score(SCORE, FakeGraderModel([RuntimeError("model process died")]))
    assert failed.errors["model_grader_server_error"] is True
    assert "model process died" in failed.errors["model_grader_server_error_details"]


@pytest.mark.parametrize(("label", "expected"), [("positive", 1.0), ("negative", 0.0)])
def test_label_model_passes_on_a_passing_label(label: str, expected: float) -> None:
    model = FakeGraderModel([answer(label)])
    assert score(LABEL, model).score == expected
    schema = model.asked[0]["response_format"]["json_schema"]["schema"]
    assert schema["properties"]["result"] == {"type": "string",
                                              "enum": ["positive", "neutral", "negative"]}


def test_label_model_outside_its_labels_is_a_parse_error() -> None:
    assert score(LABEL, FakeGraderModel([answer("great")])).errors["model_grader_parse_error"]


@dataclass
class FakeBusyGraderModel:
    """Answers by the schema asked for (``score`` or ``label``), each answer only once
    ``together`` requests are in flight at the same time (a barrier): asked one after another,
    the first waits ``wait`` seconds and fails."""

    answers: Mapping[str, str]
    together: int
    wait: float = 5.0
    in_flight: int = 0
    most_in_flight: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    barrier: threading.Barrier | None = None

    def complete(self, model: str, messages: Sequence[Mapping[str, Any]], *,
                 response_format: Mapping[str, Any] | None = None,
                 sampling: Mapping[str, Any] | None = None) -> ModelAnswer:
        if self.barrier is None:
            self.barrier = threading.Barrier(self.together, timeout=self.wait)
        with self.lock:
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            self.barrier.wait()
        finally:
            with self.lock:
                self.in_flight -= 1
        assert response_format is not None
        name = response_format["json_schema"]["name"]
        return ModelAnswer(text=self.answers[name], prompt_tokens=10, completion_tokens=5)

    def embed(self, model: str | None, texts: Sequence[str]) -> list[list[float]]:
        raise AssertionError("not asked")

    def exists(self, model: str) -> bool:
        return True


def test_usage_of_a_multi_adds_up_per_model() -> None:
    multi = {"type": "multi", "name": "m", "calculate_output": "judge / 10 + tone",
             "graders": [SCORE, LABEL]}
    model = FakeBusyGraderModel({"score": answer(5), "label": answer("positive")}, together=2)
    result = score(multi, model)
    assert result.score == pytest.approx(1.5)
    assert result.usage["judge-model"]["total_tokens"] == 30


def test_a_multi_asks_its_grader_models_at_once() -> None:
    """Three judges and a string check: the three requests are in flight together (the fake
    answers none of them before all three are there), the string check is graded too, and
    each part keeps its own score under its name."""
    judges = {f"judge{index}": {**SCORE, "name": f"judge{index}"} for index in range(2)}
    multi = {"type": "multi", "name": "m", "calculate_output": "judge0 + judge1 + tone + exact",
             "graders": {**judges, "tone": LABEL, "exact": {
                 "type": "string_check", "name": "exact", "input": "{{sample.output_text}}",
                 "reference": "an answer", "operation": "eq"}}}
    model = FakeBusyGraderModel({"score": answer(5), "label": answer("positive")}, together=3)
    result = grade(parse_grader(multi), Sample("an answer"), {"question": "q"}, model)
    assert not result.failed, result.errors
    assert model.most_in_flight == 3
    assert result.sub_scores == {"judge0": 5.0, "judge1": 5.0, "tone": 1.0, "exact": 1.0}
    assert result.score == pytest.approx(12.0)
    assert result.usage["judge-model"]["total_tokens"] == 45


def test_a_multi_with_one_model_part_asks_it_in_the_calling_thread() -> None:
    multi = {"type": "multi", "name": "m", "calculate_output": "judge",
             "graders": [SCORE]}
    model = FakeGraderModel([answer(7)])
    assert score(multi, model).score == pytest.approx(7.0)


def test_without_models_a_model_grader_is_flagged() -> None:
    result = grade(parse_grader(SCORE), Sample("x"), {"question": "q"}, None)
    assert result.errors["model_grader_server_error"] is True
