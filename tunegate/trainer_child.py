"""The training child process: ``python -m tunegate.trainer_child SPEC_JSON EVENT_FD``.

One child per training run keeps torch out of the worker, makes cancel a kill if it must be,
and gives memory back to the OS when the run ends. Events go to the worker as JSON lines on a
dedicated pipe (stdout stays free for library chatter). Signals steer it: SIGUSR1 asks for a
pause (save state, return), SIGTERM for a cancel.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import traceback
from dataclasses import asdict
from pathlib import Path
from typing import Any

from tunegate.processes import die_with_parent

_requested: list[str] = []


def _request(kind: str) -> None:
    if kind not in _requested:
        _requested.append(kind)


def should_stop() -> str | None:
    """"cancel" wins over "pause"; ``None`` while nobody asked."""
    if "cancel" in _requested:
        return "cancel"
    return "pause" if "pause" in _requested else None


def main(argv: list[str]) -> int:
    die_with_parent(signal.SIGKILL)
    spec_path, event_fd = argv[0], int(argv[1])
    events = os.fdopen(event_fd, "w", buffering=1)

    def emit(event: dict[str, Any]) -> None:
        events.write(json.dumps(event) + "\n")

    signal.signal(signal.SIGUSR1, lambda *_: _request("pause"))
    signal.signal(signal.SIGTERM, lambda *_: _request("cancel"))
    from tunegate.training.errors import TrainingFailed
    from tunegate.training.run import run_training
    from tunegate.training.spec import TrainingSpec

    try:
        spec = TrainingSpec.from_json(Path(spec_path).read_text())
        result = run_training(spec, emit, should_stop)
    except TrainingFailed as exc:
        emit({"kind": "failed", "code": exc.code, "message": exc.message})
        return 1
    except MemoryError:
        emit({"kind": "failed", "code": "out_of_memory",
              "message": "Training ran out of memory. Try a smaller batch size or a shorter "
                         "maximum sequence length."})
        return 1
    except Exception as exc:  # anything else: report it rather than die silently
        traceback.print_exc()
        emit({"kind": "failed", "code": "training_error",
              "message": f"Training stopped with an internal error: {type(exc).__name__}: {exc}"})
        return 1
    emit({"kind": "result", **asdict(result)})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
