"""Chaos on a real reinforcement job: a pause and resume through the SDK, kill -9 of the worker
mid-epoch and of the trainer child right after a checkpoint; every step is recorded once and
each resumed run carries on from the saved state, the rewards where they were.

The job learns the short-answer task of tests/data (SOURCES.md; a ``python`` grader giving 1 to
an answer of at most 10 words) on 12 of its prompts: 4 prompts a step, 3 steps an epoch, 3
epochs, so the resumable state is saved at steps 3 and 6 (and at the pause). The base answers
at length and earns little; the trained adapter earns much more, so steps 7-9, trained by a
trainer restarted from the step-6 state, would fall back to the base's level if that state
(adapter, optimizer, schedule, sampling generator) were not restored. The exact equality of a
resumed run with an uninterrupted one (same process, same threads) is
``tests/training/test_grpo.py``'s; this test checks the plumbing around it on the real path.
About 2 minutes on 2 CPU cores (1:47 measured, loaded).
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator

import pytest

from tests.conftest import TEST_DATA, Server
from tests.e2e.test_chaos import trainer_pid, worker_pid
from tests.e2e.test_training_sdk import events_of, serve_with_shared_cache, wait_for_event
from tests.helpers import sdk_create_job, sdk_upload, until, wait_until_finished
from tests.servers import sdk_client

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

TRAIN = TEST_DATA / "tunegate__rft_short_answers_train.jsonl"
GRADER = json.loads((TEST_DATA / "tunegate__rft_short_answers_grader.json").read_text())
PROMPTS = 12
STEPS = 9


@pytest.fixture
def rft_chaos_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    # A ten-minute heartbeat timeout: every takeover below is the fast, local one.
    yield from serve_with_shared_cache(tmp_path_factory, "rft-chaos",
                                       TUNEGATE_HEARTBEAT_TIMEOUT="600")


def saved_step(server: Server, job_id: str) -> int | None:
    progress = server.data_dir / "jobs" / job_id / "run" / "progress.json"
    return json.loads(progress.read_text())["step"] if progress.is_file() else None


def test_pause_and_kills_record_each_step_once_and_rewards_carry_on(
        rft_chaos_server: Server) -> None:
    server = rft_chaos_server
    client = sdk_client(server, api_key="local", max_retries=2)
    lines = TRAIN.read_bytes().splitlines(keepends=True)[:PROMPTS]
    job = sdk_create_job(
        client, sdk_upload(client, b"".join(lines), name="rft.jsonl").id, seed=3,
        method={"type": "reinforcement", "reinforcement": {"grader": GRADER, "hyperparameters": {
            "n_epochs": 3, "batch_size": 4, "learning_rate_multiplier": 1.0,
            "reasoning_effort": "low"}}})

    # 1. Pause after the first step; the state on disk is the step the run stopped at.
    wait_for_event(client, job.id, lambda e: e.type == "metrics")
    client.fine_tuning.jobs.pause(job.id)
    wait_for_event(client, job.id, lambda e: e.message.startswith("Training state saved"))
    paused_at = max(e.data["step"] for e in events_of(client, job.id) if e.type == "metrics")
    assert saved_step(server, job.id) == paused_at
    client.fine_tuning.jobs.resume(job.id)

    # 2. The worker, mid-epoch 2: the next run resumes from the step-3 state, and steps it
    #    trains again are not recorded again.
    wait_for_event(client, job.id, lambda e: e.type == "metrics" and e.data["step"] >= 4)
    assert saved_step(server, job.id) == 3
    os.kill(worker_pid(server), signal.SIGKILL)
    wait_for_event(client, job.id, lambda e: "worker running this job died" in e.message)

    # 3. The trainer child alone, right after the step-6 checkpoint: its worker restarts it.
    wait_for_event(client, job.id, lambda e: e.message == "Checkpoint created at step 6")
    assert until(lambda: saved_step(server, job.id) == 6, "the step-6 state", 10)
    os.kill(trainer_pid(server), signal.SIGKILL)
    wait_for_event(client, job.id, lambda e: e.level == "warn" and "signal 9" in e.message
                   and "Restarting it" in e.message)

    done = wait_until_finished(client, job.id, timeout=900)
    assert done.status == "succeeded", (done.error, server.log()[-3000:])
    events = events_of(client, job.id)
    metrics = [e.data for e in events if e.type == "metrics"]
    assert [m["step"] for m in metrics] == list(range(1, STEPS + 1))  # each once, in order
    messages = [e.message for e in events]
    for step in (paused_at, 3, 6):  # each run started from the state saved before it
        assert any(f"resuming after step {step}" in text for text in messages), (step, messages)
    checkpoints = [c.step_number for c in client.fine_tuning.jobs.checkpoints.list(job.id)]
    assert sorted(checkpoints) == [3, 6, 9], checkpoints

    rewards = [m["train_reward_mean"] for m in metrics]
    base_level = sum(rewards[:2]) / 2
    assert 0 < base_level < 0.5, rewards
    # Steps 7-9 come from the restored step-6 state: well above where the base model started.
    assert sum(rewards[6:]) / 3 >= base_level + 0.3, rewards
    assert all(m["train_grader_errors"] == 0 for m in metrics)
