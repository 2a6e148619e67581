"""``text_similarity`` through ``POST /v1/fine_tuning/alpha/graders/run`` scores a fixed table of
texts exactly as the reference libraries do when called directly (to 1e-6)."""

from __future__ import annotations

from typing import Any

import pytest
from nltk.tokenize import NLTKWordTokenizer
from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu
from nltk.translate.gleu_score import sentence_gleu
from nltk.translate.meteor_score import meteor_score
from rapidfuzz import fuzz
from rouge_score.rouge_scorer import RougeScorer

from tunegate.graders import wordnet

RUN = "/v1/fine_tuning/alpha/graders/run"
TABLE = [
    ("The cat sat on the mat.", "A cat was sitting on the mat."),
    ("Paris is the capital of France.", "The capital of France is Paris."),
    ("completely unrelated words here", "The quick brown fox jumps over the lazy dog"),
    ("Tokyo", "Tokyo"),
    ("The dog ran quickly to the park and played with a ball",
     "A dog hurried to the park, where it played with its ball"),
    ("", "something"),
]
WORDS = NLTKWordTokenizer().tokenize


def reference(metric: str, given: str, expected: str) -> float:
    """Each metric from its library, called the way tunegate documents it."""
    if metric == "fuzzy_match":
        return fuzz.WRatio(given, expected) / 100
    if metric == "bleu":
        return sentence_bleu([WORDS(expected)], WORDS(given),
                             smoothing_function=SmoothingFunction().method4)
    if metric == "gleu":
        return sentence_gleu([WORDS(expected)], WORDS(given))
    if metric == "meteor":
        return meteor_score([WORDS(expected)], WORDS(given), wordnet=wordnet.reader())
    kind = "rougeL" if metric == "rouge_l" else "rouge" + metric[-1]
    return RougeScorer([kind]).score(expected, given)[kind].fmeasure


METRICS = ["fuzzy_match", "bleu", "gleu", "meteor", "rouge_1", "rouge_2", "rouge_3", "rouge_4",
           "rouge_5", "rouge_l"]


def run(client: Any, metric: str, given: str, expected: str) -> dict[str, Any]:
    answer = client.post(RUN, json={
        "grader": {"type": "text_similarity", "name": "sim", "input": "{{ sample.output_text }}",
                   "reference": "{{ item.reference }}", "evaluation_metric": metric},
        "model_sample": given, "item": {"reference": expected}})
    assert answer.status_code == 200, answer.text
    return answer.json()  # type: ignore[no-any-return]


@pytest.mark.skipif(wordnet.missing_reason() is not None, reason="no WordNet (wordnet-base)")
@pytest.mark.parametrize("metric", METRICS)
def test_each_metric_matches_its_library_on_the_table(client: Any, metric: str) -> None:
    for given, expected in TABLE:
        result = run(client, metric, given, expected)
        assert not any(result["metadata"]["errors"].values())
        assert result["reward"] == pytest.approx(reference(metric, given, expected), abs=1e-6), (
            metric, given, expected)
        assert 0.0 <= result["reward"] <= 1.0


def test_the_table_is_not_trivial() -> None:
    """The table tells metrics apart: neither all ones nor all zeros for any metric."""
    for metric in ("fuzzy_match", "bleu", "rouge_2", "rouge_l"):
        scores = {round(reference(metric, given, expected), 6) for given, expected in TABLE}
        assert len(scores) >= 3, metric


class FailingEmbeddings:
    """A stand-in ``GraderModels`` whose embedding model fails (a model process that died)."""

    def embed(self, model: str | None, texts: Any) -> list[list[float]]:
        raise RuntimeError("the embedding model's process exited")


def test_cosine_whose_embedding_fails_is_flagged_not_raised() -> None:
    from tunegate.graders import Sample, grade, parse_grader

    grader = parse_grader({"type": "text_similarity", "name": "cos", "input": "a",
                           "reference": "b", "evaluation_metric": "cosine"})
    result = grade(grader, Sample("a"), {}, FailingEmbeddings())  # type: ignore[arg-type]
    assert result.score == 0
    assert result.errors["model_grader_server_error"] is True
    assert "embedding" in result.errors["model_grader_server_error_details"]


def test_meteor_without_wordnet_is_refused_at_create_time(client: Any, tmp_path: Any,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(wordnet.ENV, str(tmp_path))
    answer = client.post("/v1/fine_tuning/alpha/graders/validate", json={"grader": {
        "type": "text_similarity", "name": "m", "input": "a", "reference": "b",
        "evaluation_metric": "meteor"}})
    assert answer.status_code == 400
    assert answer.json()["error"]["param"] == "grader.evaluation_metric"
    assert "WordNet" in answer.json()["error"]["message"]
