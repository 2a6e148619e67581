"""``cosine`` asks ``GraderModels.embed`` (a test double here, named so) and compares the
vectors; the engine's arithmetic checked against numbers worked out by hand."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from tunegate.graders import ModelAnswer, Sample, grade, parse_grader


class FakeEmbeddings:
    """Fixed vectors per text, as an embedding model would give."""

    VECTORS = {"a": [1.0, 0.0], "b": [1.0, 1.0], "c": [-1.0, 0.0], "zero": [0.0, 0.0]}

    def complete(self, model: str, messages: Sequence[Mapping[str, Any]], *,
                 response_format: Mapping[str, Any] | None = None,
                 sampling: Mapping[str, Any] | None = None) -> ModelAnswer:
        raise AssertionError("cosine never completes")

    def embed(self, model: str | None, texts: Sequence[str]) -> list[list[float]]:
        return [self.VECTORS[text] for text in texts]

    def exists(self, model: str) -> bool:
        return True


@pytest.mark.parametrize(("given", "reference", "expected"), [
    ("a", "a", 1.0), ("a", "b", 2 ** -0.5), ("a", "c", 0.0), ("a", "zero", 0.0),
])
def test_cosine_of_the_embeddings(given: str, reference: str, expected: float) -> None:
    grader = parse_grader({"type": "text_similarity", "name": "c", "input": "{{sample.output_text}}",
                           "reference": reference, "evaluation_metric": "cosine"})
    result = grade(grader, Sample(given), {}, FakeEmbeddings())
    assert result.score == pytest.approx(expected)
    assert not result.failed
