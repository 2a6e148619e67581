"""The second architecture end to end: Gemma 3 270M (gemma3, the base model, no chat template)
in the models folder of a real server, fine-tuned through the official SDK on prompt/completion
data, answering the made-up fact through ``/v1/completions`` where the base does not. Beside it,
a file of an architecture tunegate cannot export or serve answers the documented 400.

Kept short for CI on 2 cores: 48 short examples, sequences of at most 32 tokens, one epoch of
batch 4 (12 steps: the made-up facts share one pattern, learnt in the first few), and a
converted-model cache shared with the session's other e2e modules. One epoch, not three of 16
examples: each epoch's checkpoint is exported to GGUF, and each export reads the Gemma GGUF's
header (its 262k-token vocabulary: about 8 s on 2 cores).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
from openai import OpenAI

from tests.conftest import GEMMA_ID, Server
from tests.e2e.test_training_sdk import serve_with_shared_cache
from tests.helpers import sdk_upload, wait_until_finished
from tests.servers import sdk_client
from tests.unit.test_architectures import write_gguf

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def fact_lines(count: int) -> bytes:
    """Made-up facts as prompt/completion pairs: the format of a base model."""
    rows = [{"prompt": f"The code word of planet Zorb-{i} is", "completion": f" blue{i}."}
            for i in range(count)]
    return "".join(json.dumps(row) + "\n" for row in rows).encode()


@pytest.fixture(scope="module")
def models_dir(gemma_models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("gemma-e2e-models")
    (folder / f"{GEMMA_ID}.gguf").symlink_to(gemma_models_dir / f"{GEMMA_ID}.gguf")
    write_gguf(folder / "snake-1m.gguf", "mamba")  # an architecture tunegate refuses
    return folder


@pytest.fixture(scope="module")
def gemma_server(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from serve_with_shared_cache(tmp_path_factory, "gemma",
                                       TUNEGATE_MODELS_DIR=str(models_dir),
                                       TUNEGATE_MAX_SEQ_LEN="32")


@pytest.fixture(scope="module")
def client(gemma_server: Server) -> OpenAI:
    return sdk_client(gemma_server, api_key="local", max_retries=0)


def test_gemma_trains_and_answers_the_fact_the_base_does_not(client: OpenAI,
                                                             gemma_server: Server) -> None:
    listed = {model.id for model in client.models.list()}
    assert GEMMA_ID in listed and "snake-1m" not in listed
    job = client.fine_tuning.jobs.create(
        model=GEMMA_ID, training_file=sdk_upload(client, fact_lines(48)).id, suffix="gemma",
        seed=5, method={"type": "supervised", "supervised": {"hyperparameters": {
            "n_epochs": 1, "batch_size": 4, "learning_rate_multiplier": 2}}})
    done = wait_until_finished(client, job.id)
    assert done.status == "succeeded", (done.error, gemma_server.log()[-3000:])
    name = f"ft:{GEMMA_ID}:org-local:gemma:{job.id[-8:]}"
    assert done.fine_tuned_model == name and done.trained_tokens > 0
    assert (gemma_server.data_dir / "jobs" / job.id / "adapter.gguf").stat().st_size > 0

    strict = sdk_client(gemma_server, api_key="local", max_retries=0,
                    _strict_response_validation=True)
    prompt = "The code word of planet Zorb-5 is"
    tuned = strict.completions.create(model=name, prompt=prompt, temperature=0, max_tokens=6)
    base = strict.completions.create(model=GEMMA_ID, prompt=prompt, temperature=0, max_tokens=6)
    print(f"tuned: {tuned.choices[0].text!r}; base: {base.choices[0].text!r}")
    assert "blue5" in tuned.choices[0].text
    assert "blue5" not in base.choices[0].text

    # The base GGUF carries no chat template: chat is refused with the reason, not guessed.
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(model=name, max_tokens=4,
                                       messages=[{"role": "user", "content": "Hi"}])
    assert refused.value.code == "chat_template_error"
    assert "/v1/completions" in refused.value.message


def test_an_unsupported_architecture_is_refused_before_any_job(client: OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        client.fine_tuning.jobs.create(model="snake-1m",
                                       training_file=sdk_upload(client, fact_lines(2)).id)
    error = refused.value
    assert (error.code, error.param) == ("unsupported_base_model", "model")
    assert "'mamba'" in error.message and "gemma3 (Gemma 3 (text))" in error.message
    assert all(job.model != "snake-1m" for job in client.fine_tuning.jobs.list())
