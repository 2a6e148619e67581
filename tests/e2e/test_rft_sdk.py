"""Reinforcement fine-tuning through the official SDK: real server, worker, trainer and model.

The job learns the short-answer task shipped in tests/data (SOURCES.md), rewarded by its
``python`` grader: the reward rises during the run and on the held-out validation prompts, and
the result is served like any fine-tuned model. About 3 minutes on 2 CPU cores. The answers
get shorter (what the grader rewards) and the grader scores every one of them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.conftest import TEST_DATA, Server
from tests.e2e.test_training_sdk import BASE, events_of, serve_with_shared_cache
from tests.helpers import sdk_create_job, sdk_upload, wait_until_finished
from tests.servers import sdk_client

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

TRAIN = TEST_DATA / "tunegate__rft_short_answers_train.jsonl"
VALID = TEST_DATA / "tunegate__rft_short_answers_valid.jsonl"
GRADER = json.loads((TEST_DATA / "tunegate__rft_short_answers_grader.json").read_text())


@pytest.fixture(scope="module")
def rft_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from serve_with_shared_cache(tmp_path_factory, "rft")


def test_a_reinforcement_job_learns_what_its_grader_rewards(rft_server: Server) -> None:
    client = sdk_client(rft_server, api_key="local", max_retries=0)
    job = sdk_create_job(
        client, sdk_upload(client, TRAIN.read_bytes(), name="rft.jsonl").id,
        validation_file=sdk_upload(client, VALID.read_bytes(), name="rft-valid.jsonl").id,
        suffix="rft", seed=1,
        method={"type": "reinforcement", "reinforcement": {"grader": GRADER, "hyperparameters": {
            "n_epochs": 1, "batch_size": 4, "eval_interval": 3, "learning_rate_multiplier": 1.0,
            "reasoning_effort": "low"}}})
    done = wait_until_finished(client, job.id, timeout=900)
    assert done.status == "succeeded", (done.error, rft_server.log()[-3000:])
    assert done.fine_tuned_model == f"ft:{BASE}:{job.organization_id}:rft:{job.id[-8:]}"
    resolved = done.method.reinforcement.hyperparameters
    assert (resolved.compute_multiplier, resolved.eval_samples, resolved.n_epochs) == (1.0, 1, 1)

    metrics = [e.data for e in events_of(client, job.id) if e.type == "metrics"]
    assert [m["step"] for m in metrics] == list(range(1, 10))
    train = [m["train_reward_mean"] for m in metrics]
    assert 0 < train[0] < 0.5 and sum(train[-3:]) / 3 >= sum(train[:2]) / 2 + 0.3, train
    lengths = [m["train_completion_length"] for m in metrics]
    assert sum(lengths[-3:]) < sum(lengths[:3]), lengths  # shorter answers: what it rewards
    assert all(m["train_grader_errors"] == 0 for m in metrics), metrics
    valid = [m["valid_reward_mean"] for m in metrics if m.get("valid_reward_mean") is not None]
    assert len(valid) == 3 and valid[-1] > valid[0] and valid[-1] >= 0.6, valid
    checkpoints = list(client.fine_tuning.jobs.checkpoints.list(job.id))
    assert checkpoints and checkpoints[0].metrics.model_extra["train_reward_mean"] is not None

    strict = sdk_client(rft_server, api_key="local", max_retries=0,
                    _strict_response_validation=True)
    assert strict.fine_tuning.jobs.retrieve(job.id).method.type == "reinforcement"
    answer = client.chat.completions.create(
        model=done.fine_tuned_model,
        messages=[{"role": "user", "content": "What is a black hole?"}], max_tokens=48)
    assert answer.choices[0].message.content
