"""The processes tests start can be interrupted: Ctrl-C reaches them as KeyboardInterrupt even
when the run itself began with SIGINT ignored (started in the background; tests/conftest.py)."""

import subprocess
import sys


def test_a_child_process_turns_sigint_into_keyboard_interrupt() -> None:
    shown = subprocess.run(
        [sys.executable, "-c", "import signal; print(signal.getsignal(signal.SIGINT).__name__)"],
        capture_output=True, text=True, check=True, timeout=60).stdout
    assert shown.strip() == "default_int_handler"
