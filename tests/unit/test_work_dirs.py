"""What settling a job's folder keeps and removes (tunegate.domain.work_dirs)."""

from __future__ import annotations

import tempfile
from pathlib import Path

from tunegate.domain import work_dirs
from tunegate.domain.jobs import JobStatus


def succeeded_folder(root: Path) -> Path:
    """A succeeded job's folder as a worker killed mid-export, and a trainer killed mid-save,
    leave it before the job was taken over and finished."""
    folder = root / "ftjob-1"
    step = folder / "checkpoints" / "step-4"
    (step / "adapter").mkdir(parents=True)
    (step / "adapter" / "adapter_model.safetensors").write_bytes(b"weights")
    (step / "metrics.json").write_text("{}")
    (step / "adapter.gguf").write_bytes(b"gguf")
    (folder / "adapter").mkdir()
    (folder / "adapter.gguf").write_bytes(b"gguf")
    (folder / "run").mkdir()
    # The exporter's temporary (tunegate.adapters.export), made the way it makes it.
    _, temporary = tempfile.mkstemp(prefix=".adapter.gguf.", suffix=".tmp", dir=step)
    (folder / "checkpoints" / ".step-6.tmp-4242" / "adapter").mkdir(parents=True)
    (folder / f".adapter.gguf.{Path(temporary).name[14:]}").write_bytes(b"half")
    return folder


def names(folder: Path) -> set[str]:
    return {str(path.relative_to(folder)) for path in folder.rglob("*")}


def test_a_succeeded_job_keeps_its_models_and_loses_every_temporary(tmp_path: Path) -> None:
    folder = succeeded_folder(tmp_path)
    work_dirs.settle(folder, JobStatus.SUCCEEDED)
    assert names(folder) == {
        "adapter", "adapter.gguf", "checkpoints", "checkpoints/step-4",
        "checkpoints/step-4/adapter", "checkpoints/step-4/adapter/adapter_model.safetensors",
        "checkpoints/step-4/metrics.json", "checkpoints/step-4/adapter.gguf"}


def test_a_failed_job_loses_its_folder(tmp_path: Path) -> None:
    folder = succeeded_folder(tmp_path)
    work_dirs.settle(folder, JobStatus.FAILED)
    assert not folder.exists()
