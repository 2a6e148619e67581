"""Unchanged OpenAI code against a real server: a job on ``gpt-4o-mini-2024-07-18`` trains the
base that name stands for (setting TUNEGATE_MODEL_ALIASES; the embedded model by default), and
its ``ft:gpt-4o-mini-2024-07-18:…`` model answers chat (issue 14). The job is the session's
shared fine-tune (tests/finetuned.py), which is created on that OpenAI name; this module only
reads it, through the strict SDK."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from openai import OpenAI

from tests.e2e.test_training_sdk import BASE, events_of
from tests.finetuned import ALIAS, SUFFIX, FineTune, countries, reworded

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture
def strict(fine_tune: FineTune) -> Iterator[OpenAI]:
    with fine_tune.strict_client() as client:
        yield client


def test_a_job_on_an_openai_name_trains_the_aliased_base_and_serves_its_model(
        strict: OpenAI, fine_tune: FineTune) -> None:
    job = strict.fine_tuning.jobs.retrieve(fine_tune.job.id)
    assert job.status == "succeeded"
    name = f"ft:{ALIAS}:org-local:{SUFFIX}:{job.id[-8:]}"
    assert (job.model, job.fine_tuned_model) == (ALIAS, name)
    warnings = [e.message for e in events_of(strict, job.id) if e.level == "warn"]
    assert any(message.startswith(f"{ALIAS} is an alias") and BASE in message
               for message in warnings), warnings
    assert {c.fine_tuned_model_checkpoint.rsplit(":", 1)[0]
            for c in strict.fine_tuning.jobs.checkpoints.list(job.id)} == {name}

    listed = {model.id for model in strict.models.list()}
    assert name in listed and ALIAS not in listed  # the model is listed, the alias is not
    assert strict.models.retrieve(name).id == name
    adapter = httpx.get(f"{fine_tune.server.api}/models/{name}/adapter", timeout=60)
    assert adapter.status_code == 200 and adapter.content[:4] == b"GGUF"
    assert adapter.headers["x-tunegate-base-model"] == BASE  # what llama.cpp must load it on

    country = countries()[1]
    question = [{"role": "user", "content": reworded(0, country)}]
    tuned = strict.chat.completions.create(model=name, messages=question,
                                           temperature=0, max_tokens=40)
    assert tuned.model == name
    assert country.capital in (tuned.choices[0].message.content or "")
    # Unchanged chat code names OpenAI's models too: the alias answers, as the base it stands for.
    aliased = strict.chat.completions.create(model="gpt-4o-mini", messages=question,
                                             temperature=0, max_tokens=40)
    base = strict.chat.completions.create(model=BASE, messages=question,
                                          temperature=0, max_tokens=40)
    assert aliased.model == "gpt-4o-mini"
    assert aliased.choices[0].message.content == base.choices[0].message.content
    assert country.capital not in (base.choices[0].message.content or "")
