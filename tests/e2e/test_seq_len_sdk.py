"""Examples longer than TUNEGATE_MAX_SEQ_LEN, through the official SDK and a real server: the job
fails naming the limit, the longest example's line and its length, at ``validating_files`` when
the base's tokenizer is on disk, else in the trainer before any weights load (issue 13)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
from openai import OpenAI
from openai.types.fine_tuning import FineTuningJob

from tests.conftest import Server, start_server_afresh, stop_server
from tests.servers import sdk_client

pytestmark = pytest.mark.e2e

LIMIT = 64
# Twelve examples whose prompts alone are longer than LIMIT tokens; line 12 is the longest.
LONG = "".join(json.dumps({"messages": [{"role": "user", "content": "word " * (100 + i)},
                                        {"role": "assistant", "content": "lost"}]}) + "\n"
               for i in range(12)).encode()


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server with a short limit, an empty model cache and an HF base ``tiny`` (tokenizer
    files only: validation never reads weights)."""
    pytest.importorskip("transformers")
    from tests.training.conftest import build_tokenizer

    tmp = tmp_path_factory.mktemp("seq-len")
    tiny = tmp / "models" / "tiny"
    build_tokenizer().save_pretrained(tiny)
    (tiny / "config.json").write_text('{"model_type": "llama"}')
    running = start_server_afresh(tmp, env={
        "TUNEGATE_MAX_SEQ_LEN": str(LIMIT), "TUNEGATE_MODELS_DIR": str(tmp / "models"),
        "TUNEGATE_MODEL_CACHE": str(tmp / "cache")})
    yield running
    stop_server(running)


@pytest.fixture
def client(srv: Server) -> Iterator[OpenAI]:
    with sdk_client(srv, api_key="local", max_retries=0,
                _strict_response_validation=True) as made:
        yield made


def failed_job(client: OpenAI, model: str, timeout: float) -> tuple[FineTuningJob, list[str]]:
    uploaded = client.files.create(file=("long.jsonl", LONG, "application/jsonl"),
                                   purpose="fine-tune")
    job = client.fine_tuning.jobs.create(model=model, training_file=uploaded.id)
    deadline = time.monotonic() + timeout
    while job.status not in ("failed", "succeeded", "cancelled"):
        assert time.monotonic() < deadline, job
        time.sleep(0.2)
        job = client.fine_tuning.jobs.retrieve(job.id)
    events = [e.message for e in client.fine_tuning.jobs.list_events(job.id, limit=100).data]
    return job, events


def assert_names_the_limit_and_the_longest(job: FineTuningJob) -> None:
    assert job.status == "failed" and job.error is not None
    assert (job.error.code, job.error.param) == ("invalid_training_file", "training_file")
    assert (f"maximum sequence length of {LIMIT} tokens (setting TUNEGATE_MAX_SEQ_LEN)"
            in job.error.message)
    assert "The longest is line 12 (" in job.error.message and " tokens)." in job.error.message


def test_with_the_tokenizer_on_disk_the_job_fails_at_validating_files(client: OpenAI) -> None:
    job, events = failed_job(client, "tiny", timeout=15)
    assert_names_the_limit_and_the_longest(job)
    assert job.error.message.startswith("The job failed due to an invalid training file.")
    assert "Fine-tuning job started" not in events  # never queued, never trained


@pytest.mark.slow  # ~25 s on 2 cores: a trainer child, and the GGUF's tokenizer read (~6 s)
def test_a_base_not_converted_yet_fails_in_the_trainer_before_its_weights_load(
        client: OpenAI, srv: Server) -> None:
    job, events = failed_job(client, "SmolLM2-135M-Instruct", timeout=120)
    assert_names_the_limit_and_the_longest(job)
    assert "Fine-tuning job started" in events
    assert not any(e.startswith(("Loaded base model", "Converting base model")) for e in events)
    assert not (srv.data_dir.parent / "cache" / "SmolLM2-135M-Instruct").exists()
