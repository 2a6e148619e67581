"""Named moments at which a test can freeze the worker, to kill it exactly there.

Killing a process "during the export" or "between the export and the final commit" cannot be
timed from outside: those moments last milliseconds. With ``TUNEGATE_TEST_FREEZE_AT`` naming
some of the points below (comma-separated) and ``TUNEGATE_TEST_FREEZE_DIR`` a folder, a worker
reaching such a point for a job writes ``<dir>/<point>-<job id>`` and stops there until it is
killed. It freezes once per job and point (the file stays), so the worker that takes the job
over goes through. Without both settings this does nothing.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

POINTS = ("export", "finalize")


def freeze_point(point: str, job_id: str) -> None:
    assert point in POINTS, point
    wanted = os.environ.get("TUNEGATE_TEST_FREEZE_AT", "")
    folder = os.environ.get("TUNEGATE_TEST_FREEZE_DIR")
    if not folder or point not in wanted.split(","):
        return
    marker = Path(folder) / f"{point}-{job_id}"
    try:
        marker.touch(exist_ok=False)
    except FileExistsError:
        return
    while True:  # until the test kills this process
        time.sleep(60)
