"""Model-process logs stay bounded (tunegate.serving.process_logs): the newest ``KEEP_LOGS``
files, each cut to its last lines when it grows past its limit, and still appended to."""

from __future__ import annotations

import os
from pathlib import Path

from tunegate.serving import process_logs


def test_only_the_newest_logs_are_kept(tmp_path: Path) -> None:
    made = []
    for index in range(process_logs.KEEP_LOGS + 5):
        log = process_logs.new_log(tmp_path, "model")
        log.write_text(f"load {index}\n")
        os.utime(log, (1_000_000 + index, 1_000_000 + index))  # in order, whatever the clock
        made.append(log)
    other = tmp_path / "notes.txt"  # not a model-process log: never touched
    other.write_text("keep")
    left = sorted(tmp_path.glob(process_logs.PATTERN))
    assert left == sorted(made[-process_logs.KEEP_LOGS:])
    assert other.exists()


def test_a_long_log_keeps_its_last_whole_lines_and_its_writer(tmp_path: Path) -> None:
    log = tmp_path / "llama-server-model-1.log"
    limit = 4096
    with log.open("ab") as writer:  # as the model process holds it: O_APPEND
        for index in range(1000):
            writer.write(b"request %04d done\n" % index)
        writer.flush()
        assert process_logs.keep_short(log, limit)
        writer.write(b"request after the cut\n")
        writer.flush()
    lines = log.read_bytes().splitlines()
    assert lines[0] == (process_logs.CUT_NOTE % limit).rstrip()
    assert lines[1].startswith(b"request ") and lines[1].endswith(b" done")  # a whole line
    assert lines[-2:] == [b"request 0999 done", b"request after the cut"]
    assert log.stat().st_size <= limit
    assert not process_logs.keep_short(log, limit)  # short enough now: left alone
