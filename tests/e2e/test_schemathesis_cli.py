"""schemathesis' CLI run as an outside user runs it (docs/contract.md, "schemathesis from outside"):
from a folder outside the checkout, with the config the package ships (``--config-file "$(python
-m tunegate.contract)"``, whose hooks are ``tunegate.contract.hooks``), against a real
``tunegate serve``: every check, exit status 0.

- Open (no keys, the default): every operation, chat and text completions and responses
  included (they run the embedded model). The served spec says no credentials are needed, so
  ``ignored_auth`` has nothing to object to. The completions skip the coverage phase here: it
  sends them a couple of hundred requests, each a generation (about 5 minutes on 2 busy
  cores); a full run from the command line includes it.
- With a key, sent with ``-H`` as the docs say: the served spec requires it, and
  ``ignored_auth`` resends successful requests without it and with a wrong one, expecting 401.
  The completions are left out of this run: their auth is the same middleware's, and
  generating is most of the open run's time.

Both run a few examples per operation (``--max-examples``) on a fixed seed. The worker only
validates; the hooks' training file has one example, so every job the run creates fails its
validation and nothing trains. Run time on 2 busy cores: about a minute for both.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import VALIDATE_ONLY, Server, start_server, stop_server

# The contract registers webhook endpoints at its own receiver on 127.0.0.1 (tunegate.contract.hooks).
CHECKED = {**VALIDATE_ONLY, "TUNEGATE_WEBHOOK_ALLOW_NETWORKS": "127.0.0.1/32"}

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")
KEY = "sk-tg-schemathesis-cli-0000000000000000"
EXAMPLES = "3"


def run_schemathesis(server: Server, outside: Path, *args: str) -> str:
    """``schemathesis --config-file "$(python -m tunegate.contract)" run
    <server>/v1/openapi.json --checks all`` from the folder ``outside``; its output, after
    asserting that it used the package's config and exited 0."""
    outside.mkdir(exist_ok=True)
    assert ROOT not in outside.resolve().parents
    environment = {name: value for name, value in os.environ.items()
                   if not name.startswith(("TUNEGATE_", "SCHEMATHESIS_"))}
    config = subprocess.run([sys.executable, "-m", "tunegate.contract"], cwd=outside,
                            env=environment, capture_output=True, text=True, check=True,
                            timeout=60).stdout.strip()
    done = subprocess.run(
        [str(SCHEMATHESIS), "--config-file", config, "run", f"{server.api}/openapi.json",
         "--checks", "all", "--max-examples", EXAMPLES, "--seed", "14", "--no-color", *args],
        cwd=outside, env=environment, capture_output=True, text=True, timeout=840)
    output = done.stdout + done.stderr
    # schemathesis names the file it read (in a checkout, the repository's, which it links to).
    assert f"Configuration:    {Path(config).resolve()}" in output, output[-3000:]
    assert done.returncode == 0, output[-12000:]
    # Every generated case passed (warnings, e.g. "Authentication failed" for the admin-only
    # permissions routes, may still be printed above the summary).
    tally = re.search(r"Test cases:\s*\n\s*(\d+) generated, (\d+) passed(?:, \d+ skipped)?\s*\n",
                      output)
    assert tally is not None and tally[1] == tally[2] and int(tally[1]) > 0, output[-3000:]
    return output


def test_open_server(tmp_path: Path) -> None:
    server = start_server(tmp_path, env=CHECKED)
    outside = tmp_path / "outside"
    try:
        api = run_schemathesis(server, outside, "--exclude-tag", "Inference")
        completions = run_schemathesis(server, outside, "--include-tag", "Inference",
                                       "--phases", "examples,fuzzing")
    finally:
        stop_server(server)
    assert "Selected: 52/58" in api, api[-3000:]
    assert "Selected: 6/58" in completions, completions[-3000:]
    log = server.log()
    assert '"POST /v1/chat/completions HTTP/1.1" 200' in log  # the model answered
    assert '"POST /v1/responses HTTP/1.1" 200' in log
    assert '"POST /v1/fine_tuning/jobs HTTP/1.1" 200' in log  # jobs were created


def test_keyed_server(tmp_path: Path) -> None:
    # No request-rate limit: a run sends a thousand requests in seconds (against a limited
    # server, pass schemathesis `--rate-limit` to match TUNEGATE_RATE_LIMIT).
    server = start_server(tmp_path, env={**CHECKED, "TUNEGATE_API_KEY": KEY,
                                         "TUNEGATE_RATE_LIMIT": "0"})
    try:
        output = run_schemathesis(server, tmp_path / "outside",
                                  "-H", f"Authorization: Bearer {KEY}",
                                  "--exclude-tag", "Inference")
    finally:
        stop_server(server)
    assert "Selected: 52/58" in output, output[-3000:]
    log = server.log()
    assert '"POST /v1/fine_tuning/jobs HTTP/1.1" 200' in log
    assert log.count('HTTP/1.1" 401') > 10  # ignored_auth's probes, refused
