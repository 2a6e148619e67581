"""The Ray executor's transfers and path mapping, without a cluster: what a node sends back
lands in the job's folder as the local executor would have left it (tunegate.worker.ray_executor).
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("ray")

from tunegate.settings import Settings  # noqa: E402
from tunegate.training.messages import CheckpointSaved, StepMetrics, to_line  # noqa: E402
from tunegate.training.spec import BaseModelRef, RunStatus, TrainingResult, TrainingSpec  # noqa: E402
from tunegate.worker.ray_executor import RayRun, pack, unpack  # noqa: E402


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_a_newer_run_state_replaces_the_old_one_and_checkpoints_add_up(tmp_path: Path) -> None:
    job = tmp_path / "job"
    _write(job / "run" / "progress.json", "step 3")
    _write(job / "run" / "stale.bin", "from step 3 only")
    _write(job / "checkpoints" / "step-3" / "adapter" / "w", "3")
    node = tmp_path / "node"
    _write(node / "run" / "progress.json", "step 6")
    _write(node / "checkpoints" / "step-6" / "adapter" / "w", "6")
    _write(node / "trainer.log", "node log")

    names = unpack(pack(node, ["checkpoints/step-6", "run", "trainer.log", "adapter"]), job)

    assert names == ["checkpoints", "run", "trainer.log"]  # a missing name is left out
    assert (job / "run" / "progress.json").read_text() == "step 6"
    assert not (job / "run" / "stale.bin").exists()  # never a mix of two states
    assert (job / "checkpoints" / "step-3" / "adapter" / "w").read_text() == "3"
    assert (job / "checkpoints" / "step-6" / "adapter" / "w").read_text() == "6"
    assert [p.name for p in job.iterdir() if p.name.startswith(".")] == []  # no staging left


def _run(tmp_path: Path) -> RayRun:
    spec = TrainingSpec(job_id="ftjob-1", base_model=BaseModelRef("m", "hf", "/models/m"),
                        training_file=str(tmp_path / "train.jsonl"), work_dir="unused",
                        cache_dir="unused")
    run = RayRun(spec, tmp_path / "job", Settings())
    run._remote_dir = "/node/tmp/tunegate-run-x"
    return run


def test_a_checkpoint_from_the_node_is_unpacked_and_named_by_its_local_path(tmp_path: Path) -> None:
    run = _run(tmp_path)
    node = tmp_path / "node"
    _write(node / "checkpoints" / "step-2" / "metrics.json", "{}")
    _write(node / "run" / "progress.json", "step 2")
    line = to_line(CheckpointSaved(step=2, path="/node/tmp/tunegate-run-x/checkpoints/step-2",
                                   metrics={"train_loss": 1.0}))
    run._take({"line": to_line(StepMetrics(2, 4, 100, {"train_loss": 1.0}))})
    run._take({"line": line, "outputs": pack(node, ["checkpoints/step-2", "run"])})

    metrics, checkpoint = run._messages
    assert isinstance(metrics, StepMetrics) and metrics.step == 2
    assert isinstance(checkpoint, CheckpointSaved)
    assert checkpoint.path == str(tmp_path / "job" / "checkpoints" / "step-2")
    assert (Path(checkpoint.path) / "metrics.json").is_file()
    assert (tmp_path / "job" / "run" / "progress.json").read_text() == "step 2"
    assert not run.finished


def test_the_end_of_a_run_brings_its_result_and_outputs_home(tmp_path: Path) -> None:
    run = _run(tmp_path)
    node = tmp_path / "node"
    _write(node / "adapter" / "adapter_config.json", "{}")
    _write(node / "results.csv", "step,train_loss\n")
    result = TrainingResult(RunStatus.SUCCEEDED, "/node/tmp/tunegate-run-x/adapter", 10,
                            "/node/tmp/tunegate-run-x/results.csv", {})
    run._take({"line": to_line(result)})
    run._take({"exit": 0, "outputs": pack(node, ["adapter", "results.csv", "run"])})

    assert run.finished and run._final is not None
    assert isinstance(run._final, TrainingResult)
    assert run._final.adapter_dir == str(tmp_path / "job" / "adapter")
    assert Path(run._final.results_csv or "").is_file()
    assert (tmp_path / "job" / "adapter" / "adapter_config.json").is_file()
