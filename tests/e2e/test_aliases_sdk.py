"""Unchanged OpenAI code against a real server: a job on ``gpt-4o-mini-2024-07-18`` trains the
base that name stands for (setting TUNEGATE_MODEL_ALIASES; the embedded model by default), and
its ``ft:gpt-4o-mini-2024-07-18:…`` model answers chat (issue 14). Alone, about 3 minutes on
2 cores (2:48 measured, converting the base model once included)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from openai import OpenAI

from tests.conftest import Server
from tests.e2e.test_training_sdk import BASE, events_of, fact_lines, serve_with_shared_cache
from tests.helpers import sdk_upload, wait_until_finished

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ALIAS = "gpt-4o-mini-2024-07-18"


@pytest.fixture(scope="module")
def alias_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from serve_with_shared_cache(tmp_path_factory, "aliases")


@pytest.fixture
def strict(alias_server: Server) -> Iterator[OpenAI]:
    with OpenAI(base_url=alias_server.api, api_key="local", max_retries=0,
                _strict_response_validation=True) as client:
        yield client


def test_a_job_on_an_openai_name_trains_the_aliased_base_and_serves_its_model(
        strict: OpenAI, alias_server: Server) -> None:
    # The training of test_training_sdk's first test, which learns the fact asked below.
    job = strict.fine_tuning.jobs.create(
        model=ALIAS, training_file=sdk_upload(strict, fact_lines(12)).id, seed=7,
        method={"type": "supervised", "supervised": {"hyperparameters": {
            "n_epochs": 2, "batch_size": 4}}})
    assert job.model == ALIAS
    done = wait_until_finished(strict, job.id)
    assert done.status == "succeeded", (done.error, alias_server.log()[-3000:])
    name = f"ft:{ALIAS}:org-local::{job.id[-8:]}"
    assert (done.model, done.fine_tuned_model) == (ALIAS, name)
    warnings = [e.message for e in events_of(strict, job.id) if e.level == "warn"]
    assert any(message.startswith(f"{ALIAS} is an alias") and BASE in message
               for message in warnings), warnings
    assert {c.fine_tuned_model_checkpoint.rsplit(":", 1)[0]
            for c in strict.fine_tuning.jobs.checkpoints.list(job.id)} == {name}

    listed = {model.id for model in strict.models.list()}
    assert name in listed and ALIAS not in listed  # the model is listed, the alias is not
    assert strict.models.retrieve(name).id == name
    adapter = httpx.get(f"{alias_server.api}/models/{name}/adapter", timeout=60)
    assert adapter.status_code == 200 and adapter.content[:4] == b"GGUF"
    assert adapter.headers["x-tunegate-base-model"] == BASE  # what llama.cpp must load it on

    question = [{"role": "user", "content": "What is the code word of planet Zorb-5?"}]
    tuned = strict.chat.completions.create(model=name, messages=question, temperature=0,
                                           max_tokens=24)
    assert tuned.model == name
    assert "blue5" in (tuned.choices[0].message.content or "")
    # Unchanged chat code names OpenAI's models too: the alias answers, as the base it stands for.
    aliased = strict.chat.completions.create(model="gpt-4o-mini", messages=question,
                                             temperature=0, max_tokens=24)
    base = strict.chat.completions.create(model=BASE, messages=question, temperature=0,
                                          max_tokens=24)
    assert aliased.model == "gpt-4o-mini"
    assert aliased.choices[0].message.content == base.choices[0].message.content
    assert "blue5" not in (base.choices[0].message.content or "")
