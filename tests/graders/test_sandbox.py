"""The Python grader's sandbox: every escape a grader might try fails inside the limits, is
reported as the grade's runtime error, and leaves this test process unharmed. The limits are
shortened (``SandboxLimits``) so that a loop does not take OpenAI's 2 minutes."""

from __future__ import annotations

import os
import socket
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from tunegate.graders import Sample, SandboxLimits, grade, parse_grader, sandbox
from tunegate.graders.sandbox import STARTUP_SECONDS, run

LIMITS = SandboxLimits(seconds=1, memory_bytes=512 * 1024 * 1024, file_bytes=1024 * 1024,
                       output_bytes=4096)


def python_grade(source: str, output: str = "Paris", item: dict | None = None,
                 limits: SandboxLimits = LIMITS) -> tuple[float, dict]:
    grader = parse_grader({"type": "python", "name": "p", "source": source})
    result = grade(grader, Sample(output), item or {"answer": "Paris"}, limits=limits)
    return result.score, result.errors


def refused(source: str, *needles: str) -> str:
    score, errors = python_grade(source)
    assert score == 0
    assert errors["python_grader_runtime_error"] is True, errors
    details = errors["python_grader_runtime_error_details"]
    for needle in needles:
        assert needle in details, details
    return details  # type: ignore[no-any-return]


def test_a_grade_reads_sample_and_item() -> None:
    source = ("def grade(sample, item):\n"
              "    return 1.0 if sample['output_text'] == item['answer'] else 0.25\n")
    assert python_grade(source) == (1.0, python_grade(source)[1])
    assert python_grade(source, output="Rome")[0] == 0.25


def test_the_shipped_libraries_import() -> None:
    source = ("import numpy, json, re, math\n"
              "def grade(sample, item):\n    return float(numpy.mean([1, 0, 1, 0]))\n")
    # numpy's import alone may take a second of CPU on a loaded machine: a roomier limit.
    assert python_grade(source, limits=SandboxLimits(seconds=20))[0] == 0.5


def test_its_own_folder_is_writable() -> None:
    source = ("def grade(sample, item):\n    open('notes.txt', 'w').write('four')\n"
              "    return len(open('notes.txt').read())\n")
    assert python_grade(source)[0] == 4.0


@pytest.mark.parametrize(("result", "why"), [("'1.0'", "str"), ("None", "NoneType"),
                                             ("float('nan')", "nan"), ("True", "bool")])
def test_a_result_that_is_not_a_number_scores_zero(result: str, why: str) -> None:
    refused(f"def grade(sample, item):\n    return {result}\n", why)


def test_an_exception_scores_zero_with_its_traceback() -> None:
    details = refused("def grade(sample, item):\n    return item['nope']\n", "KeyError",
                      "grader.py")
    assert "sandbox_child" not in details  # the user's frames only


def test_an_infinite_loop_stops_at_the_cpu_limit() -> None:
    started = time.monotonic()
    refused("def grade(sample, item):\n    while True:\n        pass\n", "CPU")
    assert time.monotonic() - started < LIMITS.seconds + STARTUP_SECONDS + 5


def test_sleeping_forever_stops_at_the_wall_clock() -> None:
    started = time.monotonic()
    refused("import time\ndef grade(sample, item):\n    time.sleep(3600)\n", "limit")
    assert time.monotonic() - started < LIMITS.seconds + STARTUP_SECONDS + 5


def test_a_memory_bomb_stops_at_the_memory_limit() -> None:
    refused("def grade(sample, item):\n    hoard = []\n    while True:\n"
            "        hoard.append(bytearray(64 * 1024 * 1024))\n", "MemoryError")


def test_a_fork_bomb_is_refused() -> None:
    refused("import os\ndef grade(sample, item):\n    while True:\n        os.fork()\n",
            "os.fork")


def test_a_fork_through_ctypes_is_refused() -> None:
    refused("import ctypes\ndef grade(sample, item):\n    return ctypes.CDLL(None).fork()\n",
            "ctypes")


def test_a_child_process_cannot_outlive_the_grade() -> None:
    marker = f"tunegate-sandbox-{uuid.uuid4().hex}"
    refused("import subprocess\ndef grade(sample, item):\n"
            f"    subprocess.Popen(['sh', '-c', 'sleep 3600; : {marker}'])\n    return 1\n",
            "subprocess.Popen")
    time.sleep(0.2)
    leftover = subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True)
    assert leftover.stdout == ""


def test_what_it_started_is_killed_with_its_process_group(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The group kill itself: a stand-in child script (no audit hook; as a C extension could)
    starts a process and exits at once. The supervisor kills the group before reaping it."""
    marker = f"tunegate-orphan-{uuid.uuid4().hex}"
    leaving_child = tmp_path / "leaving_child.py"
    leaving_child.write_text("import subprocess, sys\nsys.stdin.read()\n"
                             f"subprocess.Popen(['sh', '-c', 'sleep 3600; : {marker}'])\n")
    monkeypatch.setattr(sandbox, "CHILD", leaving_child)
    outcome = run("def grade(sample, item):\n    return 1\n", {}, {}, LIMITS)
    assert outcome.error == "no_result"
    time.sleep(0.2)
    assert subprocess.run(["pgrep", "-f", marker], capture_output=True).stdout == b""


def test_a_socket_cannot_connect() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        refused("import socket\ndef grade(sample, item):\n"
                f"    socket.create_connection(('127.0.0.1', {port}), timeout=2)\n"
                "    return 1\n", "socket")
        listener.setblocking(False)
        with pytest.raises(BlockingIOError):
            listener.accept()  # nothing ever connected


def test_a_raw_socket_cannot_even_be_made() -> None:
    refused("import socket\ndef grade(sample, item):\n    socket.socket()\n    return 1\n",
            "socket.__new__")


def test_writing_outside_its_folder_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "outside.txt"
    refused(f"def grade(sample, item):\n    open({str(target)!r}, 'w').write('x')\n"
            "    return 1\n", "refuses to write")
    assert not target.exists()
    refused("def grade(sample, item):\n    open('/etc/passwd', 'a').write('x')\n    return 1\n",
            "refuses to write")


def test_changing_files_outside_its_folder_is_refused(tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    refused(f"import os\ndef grade(sample, item):\n    os.remove({str(victim)!r})\n",
            "os.remove")
    assert victim.read_text() == "keep me"


def test_reading_outside_its_folder_is_refused(tmp_path: Path) -> None:
    secret = tmp_path / ".ssh" / "id_ed25519"
    secret.parent.mkdir()
    secret.write_text("PRIVATE KEY")
    refused(f"def grade(sample, item):\n    return len(open({str(secret)!r}).read())\n",
            "refuses to read")
    refused("import os\ndef grade(sample, item):\n"
            "    return len(open(os.path.expanduser('~root/.ssh/id_rsa')).read())\n",
            "refuses to read")
    refused(f"import os\ndef grade(sample, item):\n    return len(os.listdir({str(tmp_path)!r}))\n",
            "os.listdir")


def test_a_symbolic_link_does_not_lead_out() -> None:
    refused("import os\ndef grade(sample, item):\n    os.symlink('/etc/shadow', 'link')\n"
            "    return len(open('link').read())\n", "refuses")


def test_a_file_larger_than_the_limit_is_an_error() -> None:
    refused("def grade(sample, item):\n    with open('big', 'wb') as f:\n"
            "        for _ in range(64):\n            f.write(b'0' * 65536)\n    return 1\n",
            "File too large")


def test_megabytes_of_print_are_capped() -> None:
    outcome = run("def grade(sample, item):\n    for _ in range(5000):\n"
                  "        print('x' * 1000)\n    return 1\n", {}, {}, LIMITS)
    assert outcome.score == 1.0
    assert len(outcome.output) == LIMITS.output_bytes
    assert outcome.output_dropped == 5000 * 1001 - LIMITS.output_bytes


def test_signals_to_other_processes_are_refused() -> None:
    refused(f"import os, signal\ndef grade(sample, item):\n    os.kill({os.getpid()}, "
            "signal.SIGTERM)\n", "signals")


def test_the_network_is_a_namespace_of_its_own_where_the_kernel_grants_one() -> None:
    """As root (and where user namespaces are allowed) the child has no network at all; the
    audit hook is the net everywhere else. Recorded either way, asserted where it must hold."""
    outcome = run("def grade(sample, item):\n    return 1\n", {}, {}, LIMITS)
    assert outcome.score == 1.0
    if os.geteuid() == 0:
        assert outcome.network_namespace


def test_the_temporary_folder_is_removed() -> None:
    source = ("import os\ndef grade(sample, item):\n    open('x', 'w').write('1')\n"
              "    print(os.getcwd())\n    return 1\n")
    outcome = run(source, {}, {}, LIMITS)
    folder = outcome.output.decode().strip()
    assert folder.startswith(os.path.realpath("/tmp")) or "tunegate-grader-" in folder
    assert not Path(folder).exists()
