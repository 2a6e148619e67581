"""``text_similarity``: how close the input is to the reference, as a number in [0, 1].

OpenAI names the libraries but not every argument; tunegate's choices, made once here:

- ``fuzzy_match``: rapidfuzz's ``fuzz.WRatio`` (its general-purpose fuzzy ratio) over 100;
- ``bleu``: nltk's ``sentence_bleu`` with one reference, 4-gram weights and Chen & Cherry's
  smoothing method 4 (without smoothing, any sentence shorter than four words scores 0);
- ``gleu``: nltk's ``sentence_gleu`` (Google BLEU, 1- to 4-grams);
- ``meteor``: nltk's ``meteor_score`` (alpha 0.9, beta 3, gamma 0.5) with WordNet synonyms
  (``tunegate.graders.wordnet``);
- ``rouge_1`` … ``rouge_5``, ``rouge_l``: rouge-score's F-measure, without stemming;
- ``cosine``: the cosine of the two texts' embeddings from ``GraderModels.embed``.

BLEU, GLEU and METEOR read words cut by nltk's Treebank word tokenizer (``word_tokenize``
without its sentence splitter, whose data nltk would have to download).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Sequence
from functools import cache
from typing import Any

from tunegate.graders import wordnet

Metric = Callable[[str, str], float]

ROUGE_TYPES = {f"rouge_{n}": f"rouge{n}" for n in range(1, 6)} | {"rouge_l": "rougeL"}
METRICS = ("fuzzy_match", "bleu", "gleu", "meteor", *ROUGE_TYPES, "cosine")
_meteor_lock = threading.Lock()


def score(metric: str, given: str, reference: str) -> float:
    """The similarity of ``given`` to ``reference`` by a library metric (all but cosine)."""
    return _clip(LIBRARY_METRICS[metric](given, reference))


def cosine(vectors: Sequence[Sequence[float]]) -> float:
    """The cosine of two embeddings, 0 where either is all zeros (clipped to [0, 1] like every
    similarity: opposite vectors are as unlike as it gets)."""
    first, second = vectors
    norms = math.sqrt(sum(x * x for x in first)) * math.sqrt(sum(y * y for y in second))
    if norms == 0:
        return 0.0
    return _clip(sum(x * y for x, y in zip(first, second, strict=True)) / norms)


def _clip(value: float) -> float:
    return min(1.0, max(0.0, float(value)))


def words(text: str) -> list[str]:
    return _tokenizer().tokenize(text)


@cache
def _tokenizer() -> Any:
    from nltk.tokenize import NLTKWordTokenizer
    return NLTKWordTokenizer()


def fuzzy_match(given: str, reference: str) -> float:
    from rapidfuzz import fuzz
    return float(fuzz.WRatio(given, reference)) / 100.0


def bleu(given: str, reference: str) -> float:
    from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu
    return float(sentence_bleu([words(reference)], words(given),
                               smoothing_function=SmoothingFunction().method4))


def gleu(given: str, reference: str) -> float:
    from nltk.translate.gleu_score import sentence_gleu
    return float(sentence_gleu([words(reference)], words(given)))


def meteor(given: str, reference: str) -> float:
    from nltk.translate.meteor_score import meteor_score
    synonyms = wordnet.reader()
    with _meteor_lock:  # nltk's WordNet reader caches as it reads: one thread at a time
        return float(meteor_score([words(reference)], words(given), wordnet=synonyms))


@cache
def _rouge_scorer(kind: str) -> Any:
    from rouge_score.rouge_scorer import RougeScorer
    return RougeScorer([kind])


def _rouge(metric: str) -> Metric:
    kind = ROUGE_TYPES[metric]

    def rouge(given: str, reference: str) -> float:
        # rouge-score's order is (target, prediction): the reference first.
        return float(_rouge_scorer(kind).score(reference, given)[kind].fmeasure)
    return rouge


LIBRARY_METRICS: dict[str, Metric] = {
    "fuzzy_match": fuzzy_match, "bleu": bleu, "gleu": gleu, "meteor": meteor,
    **{metric: _rouge(metric) for metric in ROUGE_TYPES},
}
