"""A reinforcement job started with ``tunegate train --method reinforcement --grader FILE``
against a real server, worker, trainer and model: the command follows it to its end like any
job, and the job's eval is there through the official SDK in strict mode, one run per
validation with an output item per validation answer and its reward.

Short on purpose (12 prompts, 3 steps, 4 validation prompts): the learning itself is
tests/e2e/test_rft_sdk.py's.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import TEST_DATA, Server
from tests.e2e.test_training_sdk import serve_with_shared_cache
from tests.servers import sdk_client
from tunegate.worker.job_evals import job_eval_id

pytestmark = [pytest.mark.e2e, pytest.mark.slow,
              pytest.mark.filterwarnings("ignore:The Evals API is deprecated:DeprecationWarning")]

TRAIN = TEST_DATA / "tunegate__rft_short_answers_train.jsonl"
VALID = TEST_DATA / "tunegate__rft_short_answers_valid.jsonl"
GRADER = TEST_DATA / "tunegate__rft_short_answers_grader.json"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from serve_with_shared_cache(tmp_path_factory, "rft-cli")


def first_lines(source: Path, count: int, target: Path) -> Path:
    target.write_text("".join(source.read_text().splitlines(keepends=True)[:count]))
    return target


def test_train_follows_a_reinforcement_job_and_its_eval_holds_each_validation(
        server: Server, tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "tunegate", "train",
         str(first_lines(TRAIN, 12, tmp_path / "train.jsonl")),
         "--validation-file", str(first_lines(VALID, 4, tmp_path / "valid.jsonl")),
         "--model", "SmolLM2-135M-Instruct", "--method", "reinforcement",
         "--grader", str(GRADER), "--epochs", "1", "--batch-size", "4",
         "--eval-interval", "2", "--reasoning-effort", "low", "--url", server.api],
        capture_output=True, text=True, timeout=900, check=False)
    assert done.returncode == 0, (done.stdout[-2000:], done.stderr[-2000:],
                                  server.log()[-3000:])
    assert "Fine-tuned model: ft:SmolLM2-135M-Instruct:" in done.stdout
    job_id = done.stdout.split("Created job ", 1)[1].split()[0]

    strict = sdk_client(server, api_key="local", max_retries=0,
                    _strict_response_validation=True)
    eval_id = job_eval_id(job_id)
    assert eval_id in [evaluation.id for evaluation in strict.evals.list()]
    evaluation = strict.evals.retrieve(eval_id)
    assert evaluation.metadata == {"fine_tuning_job_id": job_id}
    runs = sorted(strict.evals.runs.list(eval_id), key=lambda run: run.created_at)
    assert [run.name for run in runs] == ["step 2", "step 3"]  # every 2 steps, and the last
    for run in runs:
        assert run.status == "completed" and run.result_counts.total == 4
        items = list(strict.evals.runs.output_items.list(run.id, eval_id=eval_id))
        assert len(items) == 4
        for item in items:
            assert item.datasource_item["messages"][-1]["role"] == "user"
            assert 0.0 <= item.results[0].score <= 1.0
        again = strict.evals.runs.output_items.retrieve(items[0].id, eval_id=eval_id,
                                                        run_id=run.id)
        assert again.sample.output[0].content == items[0].sample.output[0].content
    valid_means = [event.data["valid_reward_mean"]
                   for event in strict.fine_tuning.jobs.list_events(job_id, limit=100)
                   if event.type == "metrics" and event.data.get("valid_reward_mean") is not None]
    assert len(valid_means) == 2
