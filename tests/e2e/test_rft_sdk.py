"""One real reinforcement job, end to end, carrying what three jobs used to: real server,
worker, trainer and model; the job started by ``tunegate train --method reinforcement --grader
FILE`` (a client of the official SDK) and watched, paused and killed through the SDK.

- The command follows the job to its end like any job, through a pause and resume, a kill -9 of
  the worker mid-epoch and of the trainer child right after a checkpoint.
- Chaos: every step is recorded once, each resumed run carries on from the state saved before
  it, and the rewards carry on where they were (steps 7-9, trained by a trainer restarted from
  the step-6 state, would fall back to the base's level if that state - adapter, optimizer,
  schedule, sampling generator - were not restored). The exact equality of a resumed run with
  an uninterrupted one (same process, same threads) is ``tests/training/test_grpo.py``'s; this
  checks the plumbing around it on the real path.
- Learning: the job learns the short-answer task shipped in tests/data (SOURCES.md), rewarded
  by its ``python`` grader (1 to an answer of at most 10 words): the reward rises during the
  run and on the held-out validation prompts, the answers get shorter, the grader scores every
  one of them, and the result is served like any fine-tuned model.
- The job's eval is there through the SDK in strict mode: one run per validation (every
  ``eval_interval`` steps and the last), an output item per validation answer and its reward.

12 prompts, 4 a step, 3 steps an epoch, 3 epochs: the resumable state is saved at steps 3 and 6
(and at the pause); the 12 validation prompts are answered at steps 4, 8 and 9. About 2 minutes
on 2 CPU cores.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import TEST_DATA, Server
from tests.e2e.test_chaos import trainer_pid, worker_pid
from tests.e2e.test_training_sdk import BASE, events_of, serve_with_shared_cache, wait_for_event
from tests.helpers import until, wait_until_finished
from tests.servers import sdk_client
from tunegate.worker.job_evals import job_eval_id

pytestmark = [pytest.mark.e2e, pytest.mark.slow,
              pytest.mark.filterwarnings("ignore:The Evals API is deprecated:DeprecationWarning")]

TRAIN = TEST_DATA / "tunegate__rft_short_answers_train.jsonl"
VALID = TEST_DATA / "tunegate__rft_short_answers_valid.jsonl"
GRADER = TEST_DATA / "tunegate__rft_short_answers_grader.json"
PROMPTS = 12
VALIDATIONS = 12
STEPS = 9


@pytest.fixture
def rft_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    # A ten-minute heartbeat timeout: every takeover below is the fast, local one.
    yield from serve_with_shared_cache(tmp_path_factory, "rft", TUNEGATE_HEARTBEAT_TIMEOUT="600")


def first_lines(source: Path, count: int, target: Path) -> Path:
    target.write_text("".join(source.read_text().splitlines(keepends=True)[:count]))
    return target


def saved_step(server: Server, job_id: str) -> int | None:
    progress = server.data_dir / "jobs" / job_id / "run" / "progress.json"
    return json.loads(progress.read_text())["step"] if progress.is_file() else None


def start_train_command(server: Server, folder: Path) -> subprocess.Popen[str]:
    """``tunegate train`` in the background, its output in files (a pipe nobody reads while
    the test pauses and kills could fill and stall it)."""
    command = [sys.executable, "-m", "tunegate", "train",
               str(first_lines(TRAIN, PROMPTS, folder / "train.jsonl")),
               "--validation-file", str(first_lines(VALID, VALIDATIONS, folder / "valid.jsonl")),
               "--model", BASE, "--method", "reinforcement", "--grader", str(GRADER),
               "--epochs", "3", "--batch-size", "4", "--learning-rate-multiplier", "1.0",
               "--eval-interval", "4", "--reasoning-effort", "low", "--seed", "1",
               "--suffix", "rft", "--url", server.api]
    with (folder / "stdout").open("w") as out, (folder / "stderr").open("w") as err:
        return subprocess.Popen(command, stdout=out, stderr=err, text=True)


def test_a_reinforcement_job_paused_killed_and_followed_learns_what_its_grader_rewards(
        rft_server: Server, tmp_path: Path) -> None:
    server = rft_server
    client = sdk_client(server, api_key="local", max_retries=2)
    command = start_train_command(server, tmp_path)
    try:
        job = until(lambda: next(iter(client.fine_tuning.jobs.list()), None), "the job", 120)

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

        # 4. The command followed it all to the end.
        returncode = command.wait(timeout=900)
    finally:
        if command.poll() is None:
            command.kill()
            command.wait()
    stdout, stderr = (tmp_path / "stdout").read_text(), (tmp_path / "stderr").read_text()
    assert returncode == 0, (stdout[-2000:], stderr[-2000:], server.log()[-3000:])
    assert "Fine-tuned model: ft:SmolLM2-135M-Instruct:" in stdout
    assert stdout.split("Created job ", 1)[1].split()[0] == job.id

    done = wait_until_finished(client, job.id, timeout=60)
    assert done.status == "succeeded", (done.error, server.log()[-3000:])
    assert done.fine_tuned_model == f"ft:{BASE}:{job.organization_id}:rft:{job.id[-8:]}"
    resolved = done.method.reinforcement.hyperparameters
    assert (resolved.compute_multiplier, resolved.eval_samples, resolved.n_epochs) == (1.0, 1, 3)

    # Read by a strict client: every event, metrics included, as the SDK's types describe it.
    strict = sdk_client(server, api_key="local", max_retries=0, _strict_response_validation=True)
    events = events_of(strict, job.id)
    metrics = [e.data for e in events if e.type == "metrics"]
    assert [m["step"] for m in metrics] == list(range(1, STEPS + 1))  # each once, in order
    messages = [e.message for e in events]
    for step in (paused_at, 3, 6):  # each run started from the state saved before it
        assert any(f"resuming after step {step}" in text for text in messages), (step, messages)
    checkpoints = list(client.fine_tuning.jobs.checkpoints.list(job.id))
    assert sorted(c.step_number for c in checkpoints) == [3, 6, 9], checkpoints
    assert all(c.metrics.model_extra["train_reward_mean"] is not None for c in checkpoints)

    rewards = [m["train_reward_mean"] for m in metrics]
    lengths = [m["train_completion_length"] for m in metrics]
    valid = [m["valid_reward_mean"] for m in metrics if m.get("valid_reward_mean") is not None]
    print(f"rewards {rewards}; lengths {lengths}; validation {valid}")
    base_level = sum(rewards[:2]) / 2
    assert 0 < rewards[0] < 0.5 and 0 < base_level < 0.5, rewards
    # Steps 7-9 come from the restored step-6 state: well above where the base model started.
    assert sum(rewards[6:]) / 3 >= base_level + 0.3, rewards
    assert sum(lengths[-3:]) < sum(lengths[:3]), lengths  # shorter answers: what it rewards
    assert all(m["train_grader_errors"] == 0 for m in metrics), metrics
    assert len(valid) == 3 and valid[-1] > valid[0] and valid[-1] >= 0.6, valid

    # The job's eval, read by the strict client: one run per validation, one item per answer.
    assert strict.fine_tuning.jobs.retrieve(job.id).method.type == "reinforcement"
    eval_id = job_eval_id(job.id)
    assert eval_id in [evaluation.id for evaluation in strict.evals.list()]
    assert strict.evals.retrieve(eval_id).metadata == {"fine_tuning_job_id": job.id}
    runs = sorted(strict.evals.runs.list(eval_id), key=lambda run: run.created_at)
    assert [run.name for run in runs] == ["step 4", "step 8", "step 9"]  # every 4, and the last
    for run in runs:
        assert run.status == "completed" and run.result_counts.total == VALIDATIONS
        items = list(strict.evals.runs.output_items.list(run.id, eval_id=eval_id))
        assert len(items) == VALIDATIONS
        for item in items:
            assert item.datasource_item["messages"][-1]["role"] == "user"
            assert 0.0 <= item.results[0].score <= 1.0
        again = strict.evals.runs.output_items.retrieve(items[0].id, eval_id=eval_id,
                                                        run_id=run.id)
        assert again.sample.output[0].content == items[0].sample.output[0].content

    answer = client.chat.completions.create(
        model=done.fine_tuned_model,
        messages=[{"role": "user", "content": "What is a black hole?"}], max_tokens=48)
    assert answer.choices[0].message.content
