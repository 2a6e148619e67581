"""``tunegate migrate`` between two real tunegate servers, the first standing in for OpenAI (it
speaks the same API): a job trained there on ``gpt-4o-mini-2024-07-18`` (an alias of the
embedded base), so its model has an OpenAI-shaped name, moves with its files; ``migrate`` is
killed with SIGKILL in the middle of copying and run again; the target has each file and the
job once, trains the job to success, answers chat under the old ``ft:`` name, and runs the eval
of the old model's recorded answers on it. A few minutes on 2 cores (two jobs of 2 steps)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from openai import OpenAI

from tests.conftest import TUNEGATE_CLI, Server
from tests.e2e.test_cli import client_env
from tests.e2e.test_training_sdk import fact_lines, serve_with_shared_cache
from tests.helpers import wait_until_finished
from tests.servers import sdk_client
from tunegate.ids import FORMER_MODEL_KEY, SOURCE_JOB_KEY

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SOURCE_KEY = "sk-source-secret-0123456789"
TIMEOUT = 600


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from serve_with_shared_cache(tmp_path_factory, "source")


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from serve_with_shared_cache(tmp_path_factory, "target")


def sdk(server: Server) -> OpenAI:
    return sdk_client(server, api_key="none", _strict_response_validation=True)


def migrate_command(source: Server, target: Server, state: Path) -> list[str]:
    return [*TUNEGATE_CLI, "migrate", "--from", source.api, "--url", target.api, "--yes",
            "--record", "--state", str(state)]


def test_a_job_moves_trains_and_answers_under_its_old_name(source: Server, target: Server,
                                                          tmp_path: Path) -> None:
    old_side = sdk(source)
    training = old_side.files.create(file=("support.jsonl", fact_lines(10)), purpose="fine-tune")
    validation = old_side.files.create(file=("support-valid.jsonl", fact_lines(3, offset=50)),
                                       purpose="fine-tune")
    old_job = old_side.fine_tuning.jobs.create(
        model="gpt-4o-mini-2024-07-18", training_file=training.id,
        validation_file=validation.id, suffix="support", seed=3, metadata={"team": "support"},
        method={"type": "supervised", "supervised": {"hyperparameters": {
            "n_epochs": 1, "batch_size": 5}}})
    old_job = wait_until_finished(old_side, old_job.id, timeout=TIMEOUT)
    assert old_job.status == "succeeded", old_job.error
    old_model = old_job.fine_tuned_model
    assert old_model is not None and old_model.startswith("ft:gpt-4o-mini-2024-07-18:")

    env = client_env(OPENAI_API_KEY=SOURCE_KEY)
    state = tmp_path / "state.json"
    # Killed at its first copy: the upload may or may not have reached the target.
    seen = []
    with subprocess.Popen(migrate_command(source, target, state), stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, env=env,
                          stdin=subprocess.DEVNULL) as first:
        assert first.stdout is not None
        for line in first.stdout:
            seen.append(line)
            if "copying" in line:
                os.kill(first.pid, signal.SIGKILL)
                break
        first.wait(timeout=60)
    assert first.returncode == -signal.SIGKILL, "".join(seen)

    again = subprocess.run(migrate_command(source, target, state), capture_output=True,
                           text=True, env=env, stdin=subprocess.DEVNULL, timeout=TIMEOUT)
    assert again.returncode == 0, again.stdout + again.stderr
    assert SOURCE_KEY not in again.stdout + again.stderr + state.read_text()

    new_side = sdk(target)
    files = sorted(f.filename for f in new_side.files.list(purpose="fine-tune"))
    assert files == ["support-valid.jsonl", "support.jsonl"]  # each once
    [job] = list(new_side.fine_tuning.jobs.list())
    assert job.metadata == {"team": "support", SOURCE_JOB_KEY: old_job.id,
                            FORMER_MODEL_KEY: old_model}
    assert job.seed == 3
    job = wait_until_finished(new_side, job.id, timeout=TIMEOUT)
    assert job.status == "succeeded", job.error
    assert job.fine_tuned_model is not None and ":support:" in job.fine_tuned_model

    # The application changes only its base URL.
    reply = new_side.chat.completions.create(
        model=old_model, max_tokens=8, temperature=0,
        messages=[{"role": "user", "content": "What is the code word of planet Zorb-1?"}])
    assert reply.choices[0].message.content
    former = new_side.models.retrieve(old_model)
    assert (former.model_extra or {})["served_by"] == job.fine_tuned_model

    with pytest.warns(DeprecationWarning):
        [evaluation] = list(new_side.evals.list())
    items = tmp_path / "state.results" / old_job.id / "items.jsonl"
    assert len(items.read_text().splitlines()) == 3
    assert json.loads(items.read_text().splitlines()[0])["item"]["reference"]
    run = subprocess.run([*TUNEGATE_CLI, "eval", evaluation.id, "--model", old_model,
                          "--file", str(items), "--item-reference", "item.messages",
                          "--max-tokens", "16", "--url", target.api],
                         capture_output=True, text=True, env=client_env(),
                         stdin=subprocess.DEVNULL, timeout=TIMEOUT)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "close to the old answer" in run.stdout
