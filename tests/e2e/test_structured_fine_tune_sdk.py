"""Issue 27's proof on a model tunegate trained: the official SDK's
``client.chat.completions.parse(response_format=PydanticModel)``, loose and strict, on the
session's fine-tune (tests/finetuned.py), asked about 20 made-up countries in wordings it was
not trained on. Every answer parses into the model, and the fine-tune's knowledge survives the
schema constraint: the capitals are the trained ones. (A random adapter, as
``tests/inference`` uses, rambled until the token limit: ``LengthFinishReasonError``.)"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from openai import OpenAI
from pydantic import BaseModel, ConfigDict

from tests.finetuned import FineTune, countries, reworded

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

PROMPTS = 20


class CountryFacts(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    capital: str
    population: int


@pytest.fixture
def clients(fine_tune: FineTune) -> Iterator[list[OpenAI]]:
    with fine_tune.strict_client() as strict:
        yield [fine_tune.client, strict]


def test_parse_on_the_fine_tune_returns_a_validated_object_for_every_prompt(
        fine_tune: FineTune, clients: list[OpenAI]) -> None:
    asked = countries()[:PROMPTS]

    def parse(index: int) -> CountryFacts:
        completion = clients[index % 2].chat.completions.parse(
            model=fine_tune.model, response_format=CountryFacts, max_completion_tokens=64,
            temperature=0,
            messages=[{"role": "user", "content": reworded(index, asked[index])}])
        choice = completion.choices[0]
        assert completion.model == fine_tune.model and choice.finish_reason == "stop"
        assert isinstance(choice.message.parsed, CountryFacts), choice.message.content
        return choice.message.parsed

    with ThreadPoolExecutor(max_workers=4) as pool:  # the serving process's parallel slots
        parsed = list(pool.map(parse, range(PROMPTS)))
    assert [facts.name for facts in parsed] == [country.name for country in asked]
    right = sum(facts.capital == country.capital
                for facts, country in zip(parsed, asked, strict=True))
    # Measured: 19 of 20 (22 of 24 free answers named the trained capital; the base, none).
    assert right >= PROMPTS * 3 // 4, [facts.capital for facts in parsed]
