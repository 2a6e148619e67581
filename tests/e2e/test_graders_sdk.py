"""The official SDK's ``client.fine_tuning.alpha.graders.run`` and ``validate`` against a real
``tunegate serve``, loose and strict: string_check, text_similarity, python (also one that
loops, after which the server goes on), and score_model with the embedded SmolLM2 as the
grader model."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import openai
import pytest
from openai import OpenAI
from openai.types.fine_tuning.alpha import GraderRunResponse

from tests.servers import Server, sdk_client, start_server, stop_server
from tunegate.domain import catalog

pytestmark = pytest.mark.server

CHECK = {"type": "string_check", "name": "capital", "input": "{{ sample.output_text }}",
         "reference": "{{ item.answer }}", "operation": "like"}
ROUGE = {"type": "text_similarity", "name": "close", "input": "{{sample.output_text}}",
         "reference": "{{item.answer}}", "evaluation_metric": "rouge_l"}
PYTHON = {"type": "python", "name": "py", "image_tag": "2025-05-08",
          "source": "def grade(sample, item):\n"
                    "    return 1.0 if item['answer'] in sample['output_text'] else 0.0\n"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = start_server(tmp_path_factory.mktemp("graders-server"), "--worker", "external",
                           env={"TUNEGATE_PYTHON_GRADER_SECONDS": "2"})
    yield running
    stop_server(running)


@pytest.fixture(scope="module", params=[False, True], ids=["loose", "strict"])
def client(server: Server, request: pytest.FixtureRequest) -> Iterator[OpenAI]:
    made = sdk_client(server, api_key="local", max_retries=0, timeout=300,
                  _strict_response_validation=request.param)
    yield made
    made.close()


def run(client: OpenAI, grader: dict[str, Any], sample: str, item: dict[str, Any]) -> Any:
    return client.fine_tuning.alpha.graders.run(grader=grader,  # type: ignore[arg-type]
                                                model_sample=sample, item=item)


@pytest.mark.parametrize(("grader", "expected"), [(CHECK, 1.0), (PYTHON, 1.0)])
def test_exact_graders(client: OpenAI, grader: dict[str, Any], expected: float) -> None:
    result = run(client, grader, "The capital is Paris.", {"answer": "Paris"})
    assert result.reward == expected
    assert result.metadata.name == grader["name"]
    assert result.metadata.type == grader["type"]
    assert result.metadata.errors.python_grader_runtime_error is False
    assert result.metadata.token_usage is None


def test_text_similarity(client: OpenAI) -> None:
    result = run(client, ROUGE, "the cat sat", {"answer": "the cat sat on the mat"})
    assert result.reward == pytest.approx(2 * 1.0 * 0.5 / 1.5)


def test_cosine_embeds_with_the_served_base_model(client: OpenAI) -> None:
    cosine = {**ROUGE, "name": "cos", "evaluation_metric": "cosine"}
    same = run(client, cosine, "The capital of France is Paris.",
               {"answer": "The capital of France is Paris."})
    other = run(client, cosine, "The capital of France is Paris.",
                {"answer": "Bake the bread for forty minutes at high heat."})
    # The wire name (the strict SDK's attribute is api_model_grader_server_error).
    assert same.metadata.errors.to_dict()["model_grader_server_error"] is False
    assert same.reward == pytest.approx(1.0, abs=1e-4)
    assert other.metadata.errors.to_dict()["model_grader_server_error"] is False
    assert 0 < other.reward < same.reward


def test_multi(client: OpenAI) -> None:
    grader = {"type": "multi", "name": "blend", "graders": {"a": CHECK, "b": ROUGE},
              "calculate_output": "0.5 * a + 0.5 * b"}
    result = run(client, grader, "Paris", {"answer": "Paris"})
    assert result.reward == pytest.approx(1.0)
    assert result.sub_rewards == {"a": 1.0, "b": 1.0}


def test_a_looping_python_grader_is_an_error_and_the_server_goes_on(client: OpenAI) -> None:
    looping = {**PYTHON, "source": "def grade(sample, item):\n    while True:\n        pass\n"}
    result = run(client, looping, "x", {"answer": "x"})
    assert result.reward == 0
    assert result.metadata.errors.python_grader_runtime_error is True
    assert "CPU" in result.metadata.errors.python_grader_runtime_error_details
    assert run(client, CHECK, "Paris", {"answer": "Paris"}).reward == 1.0


def test_validate_and_a_bad_grader(client: OpenAI) -> None:
    assert client.fine_tuning.alpha.graders.validate(
        grader=CHECK).grader.name == "capital"  # type: ignore[arg-type,union-attr]
    with pytest.raises(openai.BadRequestError) as raised:
        client.fine_tuning.alpha.graders.validate(
            grader={**CHECK, "operation": "contains"})  # type: ignore[arg-type]
    assert raised.value.body["param"] == "grader.operation"  # type: ignore[index]


def test_score_model_with_the_embedded_model(server: Server) -> None:
    """SmolLM2-135M is a weak judge: the grade only has to be a number in the range, or a
    flagged parse error (an answer cut by the token limit), with real token counts.

    One grading (the grader model's answer is the slow part), read as both clients read it:
    the strict client's own parse of the response, and the loose client's (the SDK's
    ``model_construct``, what a client without validation builds from the same body)."""
    grader = {"type": "score_model", "name": "judge", "model": catalog.EMBEDDED_MODEL_ID,
              "range": [0, 10],
              "sampling_params": {"temperature": 0, "seed": 1, "max_completions_tokens": 96},
              "input": [{"role": "system", "content": "Rate the answer from 0 to 10."},
                        {"role": "user", "content": "Question: What is the capital of France?"
                                                    "\nAnswer: {{sample.output_text}}"}]}
    strict = sdk_client(server, api_key="local", max_retries=0, timeout=300,
                        _strict_response_validation=True)
    raw = strict.fine_tuning.alpha.graders.with_raw_response.run(
        grader=grader, model_sample="Paris", item={})  # type: ignore[arg-type]
    read_strictly = raw.parse()
    read_loosely = GraderRunResponse.model_construct(**raw.http_response.json())
    for result in (read_loosely, read_strictly):
        errors = result.metadata.errors
        assert 0 <= result.reward <= 10
        assert errors.api_model_grader_server_error is False, errors
        if errors.api_model_grader_parse_error:
            assert result.reward == 0
        usage: Any = result.api_model_grader_token_usage_per_model[catalog.EMBEDDED_MODEL_ID]
        assert usage["prompt_tokens"] > 0 and usage["completion_tokens"] > 0
        assert result.metadata.token_usage == usage["total_tokens"]


def test_a_grader_model_that_does_not_exist_is_refused(client: OpenAI) -> None:
    grader = {"type": "score_model", "name": "judge", "model": "ft:nothing:here::x",
              "input": [{"role": "user", "content": "{{sample.output_text}}"}]}
    with pytest.raises(openai.BadRequestError):
        run(client, grader, "x", {})


