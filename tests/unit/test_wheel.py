"""A built wheel is complete: installed outside the checkout, ``tunegate serve`` starts from it
and answers ``/v1/openapi.yaml`` with the repository's openapi.yaml, byte for byte, and the
dashboard (``/dashboard/``) with the files of tunegate/dashboard/, each from the wheel; and it
holds what an outside schemathesis run needs (``python -m tunegate.contract``: the config, whose
hooks import from the wheel).

openapi.yaml and handlers/ live at the repository's top level; tunegate/openapi.yaml is a
symlink that setuptools resolves into the wheel. Offline: no build isolation, no index.
"""

from __future__ import annotations

import importlib.metadata
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.conftest import start_server, stop_server

ROOT = Path(__file__).resolve().parents[2]
# pyproject's `license = "Apache-2.0"` (an SPDX expression) needs setuptools 77 or newer.
MIN_SETUPTOOLS = 77
# Run with PYTHONPATH=<site> as `python -c LAUNCHER <site> serve ...`: the same CLI as
# `tunegate serve`, after proving that both packages come from <site> and not the checkout.
LAUNCHER = """
import sys
from pathlib import Path

import handlers
import tunegate

site = Path(sys.argv.pop(1)).resolve()
for package in (tunegate, handlers):
    assert site in Path(package.__file__).resolve().parents, package.__file__

from tunegate.cli import main

main(sys.argv[1:])
"""


def _setuptools_major() -> int:
    try:
        return int(importlib.metadata.version("setuptools").split(".")[0])
    except importlib.metadata.PackageNotFoundError:
        return 0


def _pip(*args: str) -> None:
    """Run pip offline; fail with its output."""
    done = subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check", *args],
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


def _copy_checkout(target: Path) -> Path:
    """The checkout's files as git sees them (tracked and untracked, minus ignored), links kept.

    pip builds in the source folder (build/, *.egg-info): a copy keeps the checkout clean.
    """
    listed = subprocess.run(
        ["git", "-C", str(ROOT), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        capture_output=True, check=False)
    if listed.returncode != 0:
        pytest.skip("needs a git checkout: the wheel is built from the files git lists")
    for name in filter(None, listed.stdout.decode().split("\0")):
        source = ROOT / name
        if not source.is_symlink() and not source.exists():
            continue  # deleted in the working tree, not yet in git
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target / name, follow_symlinks=False)
    return target


def build_and_install(tmp_path: Path) -> Path:
    """Build the wheel from a copy of the checkout and install it into its own folder."""
    source = _copy_checkout(tmp_path / "source")
    wheels = tmp_path / "wheels"
    _pip("wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", str(wheels),
         str(source))
    (wheel,) = wheels.glob("tunegate-*.whl")
    site = tmp_path / "site"
    _pip("install", "--no-deps", "--no-index", "--target", str(site), str(wheel))
    return site


# server: `tunegate serve` runs from the wheel through `python -c LAUNCHER`, a command line the
# fast tier's guard (tests/tiers.py) does not know for tunegate's: a heavy test by what it does.
@pytest.mark.server
def test_an_installed_wheel_serves_its_spec(tmp_path: Path) -> None:
    if _setuptools_major() < MIN_SETUPTOOLS:
        pytest.skip(f"building the wheel without isolation needs setuptools>={MIN_SETUPTOOLS}")
    site = build_and_install(tmp_path)
    assert not (site / "tunegate" / "openapi.yaml").is_symlink()  # the content, not a link
    run_dir = tmp_path / "elsewhere"  # outside the checkout: nothing can come from it
    run_dir.mkdir()
    server = start_server(
        tmp_path, cli=[sys.executable, "-c", LAUNCHER, str(site)], cwd=run_dir,
        env={"PYTHONPATH": str(site), "TUNEGATE_WORKER": "external",
             "TUNEGATE_DATA": str(tmp_path / "data")})
    try:
        answer = httpx.get(f"{server.api}/openapi.yaml", timeout=10)
        assert answer.status_code == 200, server.log()[-3000:]
        assert answer.content == (ROOT / "openapi.yaml").read_bytes()
        assets = sorted((ROOT / "tunegate" / "dashboard").iterdir())
        assert {path.name for path in (site / "tunegate" / "dashboard").iterdir()} == {
            path.name for path in assets}
        for path in assets:
            served = httpx.get(f"{server.base_url}/dashboard/{path.name}", timeout=10)
            assert served.status_code == 200, path.name
            assert served.content == path.read_bytes(), path.name
    finally:
        stop_server(server)
    config = subprocess.run(
        [sys.executable, "-c", "import runpy, sys; sys.argv[1:] = []; "
         "import tunegate.contract.hooks; runpy.run_module('tunegate.contract', run_name='__main__')"],
        cwd=run_dir, env={"PYTHONPATH": str(site)}, capture_output=True, text=True, check=True)
    shipped = Path(config.stdout.strip())
    assert site in shipped.parents and not shipped.is_symlink(), shipped
    assert shipped.read_bytes() == (ROOT / "schemathesis.toml").read_bytes()
