"""What a run leaves on disk: resumable state, epoch checkpoints, the final adapter, the CSV.

Layout of ``work_dir``::

    run/                    resumable state: lora.safetensors, optimizer.pt, progress.json
    reported.jsonl          what the run reported up to that state (tunegate.training.journal)
    checkpoints/step-N/     adapter/ (PEFT) + metrics.json; only the last three are kept
    adapter/                the final PEFT adapter
    results.csv             one row per step; the columns are the objective's ``csv_columns``

Every folder is written under a temporary name and renamed into place, so a process killed at
any moment leaves either the previous complete version or the new one. A write that fails (a
full disk) removes its temporary: half-written state must not keep the disk full.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import json
import os
import random
import shutil
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunegate.errors import DISK_FULL_ERRNOS, is_disk_full

if TYPE_CHECKING:
    import torch
    from peft import PeftModel

KEEP_CHECKPOINTS = 3
# A save that fails with less than this left on its disk failed because the disk is full.
NEARLY_FULL_BYTES = 1 << 20


@dataclass
class Progress:
    """The JSON part of the resumable state: where the run is and what it has produced."""

    step: int = 0  # optimizer steps completed
    trained_tokens: int = 0
    rows: list[dict[str, Any]] = field(default_factory=list)  # one results.csv row per step
    identity: dict[str, Any] = field(default_factory=dict)  # what must match to resume


def run_dir(work_dir: str | Path) -> Path:
    return Path(work_dir) / "run"


def save_run_state(work_dir: str | Path, model: PeftModel, optimizer: torch.optim.Optimizer,
                   scheduler: Any, progress: Progress) -> Path:
    """Write adapter weights, optimizer, scheduler, RNG states and ``progress`` to ``run/``."""
    import torch
    from safetensors.torch import save_file

    target = run_dir(work_dir)
    with removed_on_failure(target.with_name(f".run.tmp-{os.getpid()}")) as temporary:
        temporary.mkdir(parents=True)
        weights = {name: p.detach().cpu().contiguous()
                   for name, p in model.named_parameters() if p.requires_grad}
        save_file(weights, str(temporary / "lora.safetensors"))
        torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                    "rng": _rng_states()}, temporary / "optimizer.pt")
        (temporary / "progress.json").write_text(json.dumps(asdict(progress)))
        _replace_folder(temporary, target)
    return target


def load_run_state(work_dir: str | Path, model: PeftModel, optimizer: torch.optim.Optimizer,
                   scheduler: Any) -> Progress | None:
    """Restore what :func:`save_run_state` wrote; ``None`` when there is no saved state."""
    import torch
    from safetensors.torch import load_file

    source = run_dir(work_dir)
    if not (source / "progress.json").is_file():
        return None
    weights = load_file(str(source / "lora.safetensors"))
    parameters = dict(model.named_parameters())
    with torch.no_grad():
        for name, tensor in weights.items():
            parameters[name].copy_(tensor)
    saved = torch.load(source / "optimizer.pt", weights_only=True, map_location="cpu")
    optimizer.load_state_dict(saved["optimizer"])
    scheduler.load_state_dict(saved["scheduler"])
    _set_rng_states(saved["rng"])
    return Progress(**json.loads((source / "progress.json").read_text()))


def saved_identity(work_dir: str | Path) -> dict[str, Any] | None:
    """The ``identity`` of the saved state, read without loading tensors."""
    path = run_dir(work_dir) / "progress.json"
    return json.loads(path.read_text())["identity"] if path.is_file() else None


def clear_run_state(work_dir: str | Path) -> None:
    shutil.rmtree(run_dir(work_dir), ignore_errors=True)


def save_adapter(model: PeftModel, target: Path) -> Path:
    """Save the PEFT adapter (``adapter_config.json`` + ``adapter_model.safetensors``)."""
    with removed_on_failure(target.with_name(f".{target.name}.tmp-{os.getpid()}")) as temporary:
        model.save_pretrained(str(temporary))
        _replace_folder(temporary, target)
    return target


def save_checkpoint(work_dir: str | Path, step: int, model: PeftModel,
                    metrics: Mapping[str, Any]) -> Path:
    """Write ``checkpoints/step-N/`` (adapter + metrics.json) and keep only the newest three."""
    folder = Path(work_dir) / "checkpoints" / f"step-{step}"
    with removed_on_failure(folder.with_name(f".step-{step}.tmp-{os.getpid()}")) as temporary:
        temporary.mkdir(parents=True)
        model.save_pretrained(str(temporary / "adapter"))
        (temporary / "metrics.json").write_text(json.dumps({"step": step, **metrics}))
        _replace_folder(temporary, folder)
    _prune_checkpoints(folder.parent)
    return folder


def write_results_csv(path: Path, rows: Iterable[Mapping[str, Any]],
                      columns: Sequence[str]) -> Path:
    """OpenAI's results file: one row per step, empty cells where a value was not measured."""
    with removed_on_failure(path.with_name(f".{path.name}.tmp-{os.getpid()}")) as temporary:
        with open(temporary, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(columns)
            for row in rows:
                writer.writerow([_cell(row.get(column)) for column in columns])
        os.replace(temporary, path)
    return path


@contextlib.contextmanager
def removed_on_failure(temporary: Path) -> Iterator[Path]:
    """A fresh temporary path (file or folder) to write into, removed if the body fails:
    a save that meets a full disk must not leave the disk full of the half it wrote. A failure
    on a full disk leaves as ``OSError`` ENOSPC, whatever the writer raised."""
    _remove(temporary)  # a leftover of an earlier process with this pid
    try:
        yield temporary
    except Exception as exc:
        full = _as_disk_full(exc, temporary.parent)
        _remove(temporary)
        if full is not None and full is not exc:
            raise full from exc
        raise
    except BaseException:
        _remove(temporary)
        raise


def _as_disk_full(exc: Exception, folder: Path) -> OSError | None:
    """``exc`` as the full disk it is, or ``None``. The writers of weights do not all keep the
    errno: safetensors raises its own error naming "os error 28", torch's zip writer a
    RuntimeError "file write failed"; a write that failed where almost no space is left failed
    for that reason."""
    if is_disk_full(exc):
        return exc  # type: ignore[return-value]  # is_disk_full: an OSError
    text = str(exc)
    if any(f"os error {number}" in text or os.strerror(number) in text
           for number in DISK_FULL_ERRNOS):
        return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    with contextlib.suppress(OSError):
        if shutil.disk_usage(folder).free < NEARLY_FULL_BYTES:
            return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    return None


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    return str(value) if isinstance(value, int) else f"{value:.5f}"


def _prune_checkpoints(folder: Path) -> None:
    steps = sorted((int(p.name.split("-", 1)[1]), p) for p in folder.glob("step-*")
                   if p.name.split("-", 1)[1].isdigit())
    for _, old in steps[:-KEEP_CHECKPOINTS]:
        shutil.rmtree(old, ignore_errors=True)


def _replace_folder(new: Path, target: Path) -> None:
    # Two renames: a crash in between leaves the old copy under .old, never a half-written one.
    old = target.with_name(f".{target.name}.old-{os.getpid()}")
    if target.exists():
        os.replace(target, old)
    os.replace(new, target)
    shutil.rmtree(old, ignore_errors=True)


def _rng_states() -> dict[str, Any]:
    import torch

    states: dict[str, Any] = {"torch": torch.get_rng_state(),
                              "python": list(random.getstate()[1])}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def _set_rng_states(states: Mapping[str, Any]) -> None:
    import torch

    torch.set_rng_state(states["torch"])
    random.setstate((3, tuple(states["python"]), None))
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
