"""A job's work folder (``jobs/<id>/``): what is left of it when the job enters a status.

The trainer writes there (``run/`` resumable state, ``checkpoints/``, ``adapter/``, ``results.csv``,
``result.json``) and the worker adds the GGUF exports; a succeeded job's folder is its model's
home. ``ON_ENTRY`` in :mod:`tunegate.domain.jobs` says, per status, what to do with it.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from pathlib import Path

from tunegate.domain.jobs import ON_ENTRY, JobStatus, WorkDir

# What a succeeded job does not need any more: resumable state, the journal of what the run
# reported (tunegate.training.journal), the trainer's input and the worker's note of the
# results file's id (tunegate.worker.publishing).
_TRIMMED = ("run", "reported.jsonl", "spec.json", "results-file-id")


def settle(folder: Path, status: JobStatus) -> None:
    """Apply ``status``'s work-folder rule to ``folder`` (call it once no process writes there)."""
    rule = ON_ENTRY[status].work_dir
    if rule is WorkDir.REMOVE:
        shutil.rmtree(folder, ignore_errors=True)
    elif rule is WorkDir.TRIM and folder.is_dir():
        _remove(entry for entry in folder.iterdir()
                if entry.name in _TRIMMED or _is_temporary(entry))
        # A process killed while writing a checkpoint (the trainer's ``.step-N.tmp-<pid>``) or
        # exporting one (the worker's ``.adapter.gguf.<random>.tmp``) left its temporary there:
        # nothing else ever removes it, and the folder is the model's home from now on.
        checkpoints = folder / "checkpoints"
        if checkpoints.is_dir():
            _remove(entry for entry in checkpoints.iterdir() if _is_temporary(entry))
            for checkpoint in checkpoints.iterdir():
                if checkpoint.is_dir():
                    _remove(entry for entry in checkpoint.iterdir() if _is_temporary(entry))


def _is_temporary(entry: Path) -> bool:
    """Every temporary of tunegate's writers is a hidden name beside its target."""
    return entry.name.startswith(".")


def remove_temporaries(folder: Path) -> None:
    """Remove what saves cut short left in ``folder`` and its ``checkpoints/``: every name that
    starts with "." is a temporary (``.run.tmp-<pid>``, ``.step-3.tmp-<pid>``, ``.run.old-<pid>``)
    of a trainer killed mid-save, which can hold as much as the state itself. Call it only while
    no process writes there."""
    for parent in (folder, folder / "checkpoints"):
        if parent.is_dir():
            _remove(entry for entry in parent.iterdir() if _is_temporary(entry))


def _remove(entries: Iterable[Path]) -> None:
    for entry in list(entries):
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
