"""A Hugging Face folder as a base model, end to end: ``tunegate models add FOLDER`` converts it
with llama.cpp's own convert_hf_to_gguf.py (installed by ``make setup``, run offline), and the
GGUF it writes lists in ``/v1/models``, serves a chat completion through the official SDK,
computes the logits transformers computes on the folder, and fine-tunes into an adapter that
exports to llama.cpp and serves.

The folder is real: the embedded SmolLM2 GGUF loaded by transformers and saved with
``save_pretrained`` (model and tokenizer), by the trainer's own model cache
(``resolve_hf_folder``), in the cache the session's other e2e servers share.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from openai import OpenAI

from tests.conftest import TUNEGATE_CLI, Server
from tests.e2e.test_training_sdk import fact_lines, serve_with_shared_cache
from tests.export.helpers import logits
from tests.helpers import sdk_upload, wait_until_finished
from tests.servers import sdk_client

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

MODEL_ID = "smollm2-hf"  # --name: the folder's own name is the embedded model's id
# llama.cpp on the float16 GGUF against transformers in float32 on the folder (float32 weights):
# measured 0.09 at most over the vocabulary (logits span about ±30); bfloat16 would give ~0.5.
LOGIT_TOLERANCE = 0.25


@pytest.fixture(scope="module")
def hf_folder(converted_smollm2: Path) -> Path:
    return converted_smollm2


@pytest.fixture(scope="module")
def models_dir(hf_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("hf-models")
    added = subprocess.run([*TUNEGATE_CLI, "models", "add", str(hf_folder), "--name", MODEL_ID,
                            "--models-dir", str(folder)], capture_output=True, text=True,
                           timeout=600)
    assert added.returncode == 0, added.stderr[-3000:]
    assert added.stdout == f"{MODEL_ID}\n" and "converted to" in added.stderr
    assert [path.name for path in folder.iterdir()] == [f"{MODEL_ID}.gguf"]
    return folder


@pytest.fixture(scope="module")
def hf_server(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from serve_with_shared_cache(tmp_path_factory, "hf-folder",
                                       TUNEGATE_MODELS_DIR=str(models_dir),
                                       TUNEGATE_MAX_SEQ_LEN="64")


@pytest.fixture(scope="module")
def strict(hf_server: Server) -> OpenAI:
    return sdk_client(hf_server, api_key="local", max_retries=0,
                  _strict_response_validation=True)


def test_the_converted_folder_lists_and_serves(strict: OpenAI) -> None:
    assert MODEL_ID in {model.id for model in strict.models.list()}
    reply = strict.chat.completions.create(
        model=MODEL_ID, temperature=0, max_tokens=8,
        messages=[{"role": "user", "content": "What is the capital of France?"}])
    print(f"reply: {reply.choices[0].message.content!r}")
    assert reply.model == MODEL_ID and reply.choices[0].message.content


def test_llama_cpp_on_the_gguf_computes_what_transformers_does_on_the_folder(
        hf_folder: Path, models_dir: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokens = AutoTokenizer.from_pretrained(hf_folder)(
        "The capital of France is Paris, and the capital of Germany is")["input_ids"]
    model = AutoModelForCausalLM.from_pretrained(hf_folder, dtype=torch.float32)
    with torch.no_grad():
        expected = model(torch.tensor([tokens])).logits[0].double().numpy()
    got = logits(models_dir / f"{MODEL_ID}.gguf", tokens)
    difference = float(np.abs(got - expected).max())
    print(f"max |llama.cpp - transformers| = {difference:.4f} over {len(tokens)} positions")
    assert difference < LOGIT_TOLERANCE
    assert (got.argmax(-1) == expected.argmax(-1)).all()


def test_a_job_on_the_converted_base_exports_and_serves(strict: OpenAI, hf_server: Server) -> None:
    job = strict.fine_tuning.jobs.create(
        model=MODEL_ID, training_file=sdk_upload(strict, fact_lines(10)).id, suffix="hf",
        seed=3, method={"type": "supervised", "supervised": {"hyperparameters": {
            "n_epochs": 1, "batch_size": 10}}})
    done = wait_until_finished(strict, job.id)
    assert done.status == "succeeded", (done.error, hf_server.log()[-3000:])
    assert (hf_server.data_dir / "jobs" / job.id / "adapter.gguf").stat().st_size > 0
    assert done.fine_tuned_model is not None
    reply = strict.chat.completions.create(
        model=done.fine_tuned_model, temperature=0, max_tokens=8,
        messages=[{"role": "user", "content": "What is the code word of planet Zorb-1?"}])
    assert reply.model == done.fine_tuned_model and reply.choices[0].message.content
