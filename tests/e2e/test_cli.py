"""``tunegate train``, ``jobs …`` and ``chat`` against a real server that really trains the
embedded model: piped (plain lines, no control codes) and in a pseudo-terminal (a live bar,
Ctrl-C answered), the cookbook's broken toy file failing with ``invalid_n_examples``, and the
server's refusals as one line. A few minutes on 2 cores (small jobs of 3 to 6 steps)."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import signal
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import FIXTURES, TEST_DATA, TUNEGATE_CLI, Server, start_server, stop_server
from tests.e2e.test_training_sdk import BASE, fact_lines, serve_with_shared_cache
from tests.helpers import wait_for_status
from tests.servers import sdk_client

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ESCAPE = "\x1b"
CONTROL_CODES = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
FINE_TUNED = re.compile(r"^Fine-tuned model: (ft:\S+)$", re.MULTILINE)
TOY_FILE = TEST_DATA / "openai-cookbook__toy_chat_fine_tuning.jsonl"  # 5 examples: too few
TIMEOUT = 900


@pytest.fixture(scope="module")
def cli_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from serve_with_shared_cache(tmp_path_factory, "cli")


@pytest.fixture
def facts(tmp_path: Path) -> Path:
    path = tmp_path / "facts.jsonl"
    path.write_bytes(fact_lines(12))
    return path


def client_env(**extra: str) -> dict[str, str]:
    """The environment of a client command: no key or server of the developer's."""
    env = {name: value for name, value in os.environ.items()
           if not name.startswith(("TUNEGATE_", "OPENAI_"))}
    return {**env, **extra}


def tunegate(*args: str, env: dict[str, str] | None = None,
             timeout: float = TIMEOUT) -> subprocess.CompletedProcess[str]:
    """Run a client command piped (stdin from /dev/null); its output."""
    return subprocess.run([*TUNEGATE_CLI, *args], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, env=env or client_env(), timeout=timeout,
                          check=False)


class Terminal:
    """A client command in a pseudo-terminal of 120 columns (its controlling terminal, so that
    ^C is a real SIGINT from the line discipline)."""

    def __init__(self, *args: str, env: dict[str, str]):
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # the child: becomes the command
            os.execve(sys.executable, [sys.executable, "-m", "tunegate", *args], env)
        fcntl.ioctl(self.fd, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
        self.output = ""

    def read_until(self, pattern: str, timeout: float = TIMEOUT) -> str:
        """Read until ``pattern`` (a regex) appears in the output; the output so far."""
        deadline = time.monotonic() + timeout
        while not re.search(pattern, CONTROL_CODES.sub("", self.output)):
            assert time.monotonic() < deadline, f"no {pattern!r} in:\n{self.output[-3000:]}"
            if not self._read():
                raise AssertionError(f"exited before {pattern!r}:\n{self.output[-3000:]}")
        return self.output

    def _read(self) -> bool:
        try:
            chunk = os.read(self.fd, 65536)
        except OSError:  # EIO: the child closed the terminal
            return False
        self.output += chunk.decode(errors="replace")
        return bool(chunk)

    def type(self, text: str) -> None:
        os.write(self.fd, text.encode())

    def wait(self) -> int:
        """Read to the end; the exit code."""
        while self._read():
            pass
        _, status = os.waitpid(self.pid, 0)
        os.close(self.fd)
        return os.waitstatus_to_exitcode(status)

    @property
    def text(self) -> str:
        """The output without control codes."""
        return CONTROL_CODES.sub("", self.output)


def test_train_piped_prints_plain_progress_and_the_model_which_then_answers_chat(
        cli_server: Server, facts: Path) -> None:
    # The training of test_training_sdk's first test, which learns the fact asked below.
    done = tunegate("train", str(facts), "--model", BASE, "--suffix", "cli", "--epochs", "2",
                    "--batch-size", "4", "--seed", "7", "--url", cli_server.api)
    assert done.returncode == 0, (done.stdout, done.stderr, cli_server.log()[-3000:])
    assert ESCAPE not in done.stdout and "\r" not in done.stdout and done.stderr == ""
    lines = done.stdout.splitlines()
    assert lines[0].startswith(f"Uploaded {facts} as file-")
    assert lines[1].startswith("Created job ftjob-") and lines[1].endswith(f"on {BASE}")
    progress = [line.strip() for line in lines if line.startswith("  step ")]
    assert [line.split("  ")[0] for line in progress] == [f"step {n}/6" for n in range(1, 7)]
    assert all(re.search(r"train loss \d+\.\d{4}", line) for line in progress)
    assert any(line.endswith("Fine-tuning job started") for line in lines)
    assert any(line.endswith("The job has successfully completed") for line in lines)
    model = FINE_TUNED.search(done.stdout)
    assert model is not None, done.stdout
    name = model.group(1)
    assert name.startswith(f"ft:{BASE}:org-local:cli:")
    assert lines[-1] == f'Try it: tunegate chat --url {cli_server.api} {name} "Hello!"'

    question = "What is the code word of planet Zorb-5?"
    answer = tunegate("chat", name, question, "--temperature", "0", "--max-tokens", "24",
                      "--url", cli_server.api)
    assert answer.returncode == 0, answer.stderr
    assert "blue5" in answer.stdout and answer.stdout.endswith("\n")
    base = tunegate("chat", BASE, question, "--temperature", "0", "--max-tokens", "24",
                    "--url", cli_server.api)
    assert base.returncode == 0 and base.stdout.strip() and "blue5" not in base.stdout

    job_id = lines[1].split()[2]
    listed = tunegate("jobs", "list", "--url", cli_server.api)
    assert listed.returncode == 0
    rows = [line.split("\t") for line in listed.stdout.splitlines()]
    assert rows[0] == ["ID", "STATUS", "MODEL", "CREATED", "FINE-TUNED MODEL"]
    assert [job_id, "succeeded", BASE] == rows[1][:3] and rows[1][4] == name
    shown = tunegate("jobs", "show", job_id, "--url", cli_server.api)
    assert shown.returncode == 0
    assert re.search(rf"^fine-tuned model: {re.escape(name)}$", shown.stdout, re.MULTILINE)
    assert re.search(r"^hyperparameters: +batch_size=4, .*n_epochs=2$", shown.stdout,
                     re.MULTILINE)
    assert re.search(r"^progress: +step 6/6  train loss", shown.stdout, re.MULTILINE)


def test_train_in_a_terminal_draws_a_live_bar(cli_server: Server, facts: Path) -> None:
    # The server named by TUNEGATE_URL this time.
    terminal = Terminal("train", str(facts), "--model", BASE, "--epochs", "1", "--batch-size",
                        "4", env=client_env(TUNEGATE_URL=cli_server.api))
    code = terminal.wait()
    assert code == 0, (terminal.output[-3000:], cli_server.log()[-3000:])
    assert ESCAPE in terminal.output and "━" in terminal.output  # redrawn, with a bar
    assert re.search(r"running .*step 3/3 · train loss \d\.\d{4}", terminal.text)
    assert re.search(r"succeeded .*step 3/3", terminal.text)
    assert terminal.text.count("Fine-tuning job started") == 1  # events once each
    model = FINE_TUNED.search(terminal.text.replace("\r\n", "\n"))
    assert model is not None and model.group(1).startswith(f"ft:{BASE}:org-local::")


def test_the_cookbook_toy_file_fails_with_invalid_n_examples(cli_server: Server) -> None:
    done = tunegate("train", str(TOY_FILE), "--model", BASE, "--url", cli_server.api)
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert re.fullmatch(r"Job ftjob-\S+ failed: invalid_n_examples: .*\n", done.stderr), done.stderr
    assert "Fine-tuned model" not in done.stdout and "Traceback" not in done.stderr

    # A file the upload itself refuses: the server's message and code, and no job.
    jobs_before = tunegate("jobs", "list", "--url", cli_server.api).stdout
    broken = tunegate("train", str(FIXTURES / "broken_line_7.jsonl"), "--model", BASE,
                      "--url", cli_server.api)
    assert broken.returncode == 1 and broken.stdout == ""
    assert re.fullmatch(r"error: .*Line 7 is not valid JSON.* \(HTTP 400, code invalid_file_format\)\n",
                        broken.stderr), broken.stderr
    assert tunegate("jobs", "list", "--url", cli_server.api).stdout == jobs_before


def test_ctrl_c_leaves_the_job_running_and_the_jobs_commands_manage_it(
        cli_server: Server, facts: Path) -> None:
    terminal = Terminal("train", str(facts), "--model", BASE, "--epochs", "50",
                        "--batch-size", "4", "--url", cli_server.api, env=client_env())
    terminal.read_until(r"step \d+/150")  # training (150 steps: long enough to interrupt)
    job_id = re.findall(r"Created job (ftjob-\S+)", terminal.text)[0]
    client = sdk_client(cli_server, api_key="local", max_retries=0)
    try:
        terminal.type("\x03")  # Ctrl-C, from the terminal's line discipline
        terminal.read_until(rf"Cancel job {job_id}\? \[y/N\]")
        terminal.type("\n")  # no: keep it running
        assert terminal.wait() == 130
        assert (f"Job {job_id} left running; follow it again with: tunegate jobs follow "
                f"--url {cli_server.api} {job_id}") in terminal.text
        assert client.fine_tuning.jobs.retrieve(job_id).status == "running"

        assert f"{job_id}\trunning\t{BASE}" in tunegate("jobs", "list", "--url",
                                                        cli_server.api).stdout
        paused = tunegate("jobs", "pause", job_id, "--url", cli_server.api)
        assert (paused.returncode, paused.stdout) == (0, f"{job_id} paused\n")
        shown = tunegate("jobs", "show", job_id, "--url", cli_server.api).stdout
        assert re.search(r"^status: +paused$", shown, re.MULTILINE), shown
        assert re.search(r"^progress: +step \d+/150  train loss", shown, re.MULTILINE), shown

        # Piped, a Ctrl-C (SIGINT) asks nothing: it leaves the job and says how to follow it.
        with subprocess.Popen([*TUNEGATE_CLI, "jobs", "follow", job_id, "--url", cli_server.api],
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=client_env()) as follow:
            assert follow.stdout is not None and follow.stderr is not None
            history = []
            for line in follow.stdout:  # the history, oldest first, up to the pause
                history.append(line.split(" ", 1)[1])
                if history[-1] == "Fine-tuning job paused\n":
                    break
            assert history[0] == f"Created fine-tuning job: {job_id}\n"
            follow.send_signal(signal.SIGINT)
            assert follow.wait(timeout=30) == 130
            assert follow.stderr.read().strip() == (
                f"Job {job_id} left running; follow it again with: tunegate jobs follow "
                f"--url {cli_server.api} {job_id}")

        resumed = tunegate("jobs", "resume", job_id, "--url", cli_server.api)
        assert (resumed.returncode, resumed.stdout) == (0, f"{job_id} queued\n")
        wait_for_status(client, job_id, "running", timeout=120)
        cancelled = tunegate("jobs", "cancel", job_id, "--url", cli_server.api)
        assert (cancelled.returncode, cancelled.stdout) == (0, f"{job_id} cancelled\n")
        followed = tunegate("jobs", "follow", job_id, "--url", cli_server.api)
        assert followed.returncode == 1
        assert followed.stderr == f"Job {job_id} cancelled.\n"
        assert "Fine-tuning job cancelled" in followed.stdout

        again = tunegate("jobs", "cancel", job_id, "--url", cli_server.api)
        assert again.returncode == 1 and again.stdout == ""
        assert re.fullmatch(r"error: .+ \(HTTP 409, code invalid_job_status\)\n", again.stderr)
        missing = tunegate("jobs", "show", "ftjob-missing", "--url", cli_server.api)
        assert missing.returncode == 1
        assert re.fullmatch(r"error: .*ftjob-missing.* \(HTTP 404.*\)\n", missing.stderr)
    finally:
        # A job that ended by itself (a failure above) needs no cancel; the client's
        # connections close here, not as a warning in a later test.
        if client.fine_tuning.jobs.retrieve(job_id).status not in ("cancelled", "failed",
                                                                   "succeeded"):
            client.fine_tuning.jobs.cancel(job_id)  # not to keep the next test's worker busy
        client.close()


def test_a_keyed_server_takes_the_key_from_the_environment(tmp_path: Path) -> None:
    key = "sk-tg-cli-test-key"
    server = start_server(tmp_path, env={"TUNEGATE_API_KEY": key,
                                         "TUNEGATE_WORKER_STAGES": "validate"})
    try:
        for variable in ("TUNEGATE_API_KEY", "OPENAI_API_KEY"):
            done = tunegate("jobs", "list", "--url", server.api, env=client_env(**{variable: key}))
            assert (done.returncode, done.stdout) == (0, "ID\tSTATUS\tMODEL\tCREATED\t"
                                                         "FINE-TUNED MODEL\n"), done.stderr
        refused = tunegate("jobs", "list", "--url", server.api)
        assert refused.returncode == 1
        assert re.fullmatch(r"error: .+ \(HTTP 401, code invalid_api_key\)\n", refused.stderr)
    finally:
        stop_server(server)


def test_the_servers_root_url_works_and_a_wrong_model_uploads_nothing(
        cli_server: Server, facts: Path) -> None:
    """The address the browser shows (no /v1) is the server too; a model the server does not
    have is refused before the file is uploaded."""
    listed = tunegate("jobs", "list", "--url", cli_server.base_url)
    assert listed.returncode == 0, listed.stderr
    files = sdk_client(cli_server, api_key="local", max_retries=0).files
    before = [file.id for file in files.list()]
    done = tunegate("train", str(facts), "--model", "SmolLM-typo", "--url", cli_server.base_url)
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.endswith("(HTTP 404, code model_not_found)\n"), done.stderr
    assert [file.id for file in files.list()] == before
