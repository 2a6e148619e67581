"""The training child process: ``python -m tunegate.training.child SPEC_JSON EVENT_FD``.

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
from pathlib import Path

from tunegate.processes import die_with_parent
from tunegate.training.messages import Failed, TrainerMessage, to_line
from tunegate.training.threads import apply_priority

# The first argument of a child that waits for its run (tunegate.worker.standby).
STANDBY_FLAG = "--standby"

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
    apply_priority()  # TUNEGATE_TRAINER_NICE, before the imports a standby child does
    # First thing: a pause or cancel that arrives early must not kill the run by default action.
    signal.signal(signal.SIGUSR1, lambda *_: _request("pause"))
    signal.signal(signal.SIGTERM, lambda *_: _request("cancel"))
    # Ctrl-C in a terminal reaches the whole process group; the worker decides what the run
    # does then (it pauses it), so the child must not die of a KeyboardInterrupt mid-step.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if argv[0] == STANDBY_FLAG:
        event_fd = int(argv[1])
        assignment = _wait_for_assignment()
        if assignment is None:
            return 0
        spec_path = assignment["spec"]
        _redirect_output(Path(assignment["log"]))
    else:
        spec_path, event_fd = argv[0], int(argv[1])
    events = os.fdopen(event_fd, "w", buffering=1)

    def emit(message: TrainerMessage) -> None:
        events.write(to_line(message))

    from tunegate.training.errors import TrainingFailed
    from tunegate.training.spec import TrainingSpec

    try:
        # The spec first: a method with a value out of bounds fails before torch is imported.
        spec = TrainingSpec.from_json(Path(spec_path).read_text())
        from tunegate.training.run import run_training

        result = run_training(spec, emit, should_stop)
    except TrainingFailed as exc:
        emit(Failed(exc.code, exc.message, exc.param))
        return 1
    except MemoryError:
        emit(Failed("out_of_memory", "Training ran out of memory. Try a smaller batch size or "
                    "a shorter maximum sequence length."))
        return 1
    except Exception as exc:  # anything else: report it rather than die silently
        traceback.print_exc()
        emit(Failed("training_error", "Training stopped with an internal error: "
                    f"{type(exc).__name__}: {exc}"))
        return 1
    emit(result)
    return 0


def _wait_for_assignment() -> dict[str, str] | None:
    """Standby: import what a run needs, then wait for the worker's assignment on stdin."""
    from tunegate.training.run import preload

    preload()
    line = sys.stdin.readline()
    return json.loads(line) if line.strip() else None


def _redirect_output(log_path: Path) -> None:
    """From now on stdout and stderr (library chatter, tracebacks) go to the run's log."""
    sys.stdout.flush()
    sys.stderr.flush()
    log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(log)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
