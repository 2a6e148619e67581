"""A real full disk for tests: a small tmpfs, mounted in a private mount namespace.

A test cannot fill the machine's disk, and a fake ``ENOSPC`` misses what only a real one shows
(SQLite needs room to delete a row). ``run_on_small_disk`` runs a scenario, a function
``scenario(mount: Path) -> None`` of a test module, in a Python child started under
``unshare --user --map-root-user --mount``: the child mounts a tmpfs of ``size`` bytes over a
folder of its own and sees it until it exits; nothing else on the machine does. The scenario
asserts what it must; the test asserts that the child succeeded. Where user namespaces are
not allowed, the test is skipped.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

CHILD = """
import sys
from pathlib import Path
import importlib
module, name, mount = sys.argv[1:]
getattr(importlib.import_module(module), name)(Path(mount))
"""


def _can_mount() -> bool:
    if shutil.which("unshare") is None or shutil.which("mount") is None:
        return False
    probe = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c",
                            "mount -t tmpfs -o size=64k tmpfs /mnt"],
                           capture_output=True, check=False)
    return probe.returncode == 0


def run_on_small_disk(module: str, scenario: str, folder: Path, size: int,
                      timeout: float = 120) -> str:
    """Run ``module.scenario(mount)`` with a ``size``-byte tmpfs at ``mount`` (made in
    ``folder``); fail with its output if it fails; its output otherwise."""
    if not _can_mount():
        pytest.skip("needs a user and mount namespace (unshare) to mount a small tmpfs")
    mount = folder / "small-disk"
    mount.mkdir()
    command = ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c",
               'mount -t tmpfs -o size="$1" tmpfs "$2" && shift 2 && exec "$@"', "sh",
               str(size), str(mount), sys.executable, "-c", CHILD, module, scenario, str(mount)]
    root = Path(__file__).resolve().parent.parent
    # After the caller's path: a run against another copy of tunegate keeps that copy.
    environment = {**os.environ,
                   "PYTHONPATH": os.pathsep.join(filter(None, [os.environ.get("PYTHONPATH"),
                                                               str(root)]))}
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                          env=environment, check=False)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    return output


def fill(folder: Path, leave: int = 0) -> Path:
    """Write ``folder/filler`` until the disk has no byte left (a tmpfs counts whole pages:
    large writes first, then single bytes into the last page), then give ``leave`` bytes back;
    the filler's path."""
    filler = folder / "filler"
    with open(filler, "wb", buffering=0) as file:
        for chunk in (1 << 20, 4096, 1):
            block = b"\0" * chunk
            try:
                while True:
                    file.write(block)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
    assert shutil.disk_usage(folder).free == 0
    if leave:
        os.truncate(filler, filler.stat().st_size - leave)
    return filler
