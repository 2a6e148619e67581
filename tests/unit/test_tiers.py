"""The fast tier's guard (tests/tiers.py): what it refuses while a fast test runs, and what not."""

from __future__ import annotations

import contextlib
import subprocess
import sys

import pytest

from tests import tiers


@pytest.mark.parametrize("name", ["torch", "torch.nn", "transformers", "peft.tuners"])
def test_a_model_import_fails_the_test_naming_the_marker(name: str) -> None:
    with pytest.raises(pytest.fail.Exception, match="mark it @pytest.mark.model"):
        tiers._RefuseModelImports().find_spec(name, None)


def test_other_imports_pass() -> None:
    assert tiers._RefuseModelImports().find_spec("json", None) is None


@pytest.mark.parametrize(("argv", "what"), [
    ([sys.executable, "-m", "tunegate", "serve", "--port", "1"], "a tunegate process (tunegate serve)"),
    ([sys.executable, "-m", "tunegate.training.child", "x"], "a tunegate process"),
    (["/venv/lib/llama_cpp/bin/llama-server", "-m", "x.gguf"], "a llama.cpp program"),
    (["git", "status"], None),
    ("echo hello", None),
])
def test_heavy_commands_are_told_apart(argv: list[str] | str, what: str | None) -> None:
    found = tiers._heavy_command(argv)
    assert found == what if what is None else found is not None and found.startswith(what)


def test_inside_the_guard_a_server_cannot_start_and_a_plain_command_can() -> None:
    original = subprocess.Popen.__init__
    with tiers.refusing_heavy_work():
        with pytest.raises(pytest.fail.Exception, match="mark it @pytest.mark.server"):
            subprocess.Popen([sys.executable, "-m", "tunegate", "serve"])
        assert subprocess.run(["true"], check=False).returncode == 0
    assert subprocess.Popen.__init__ is original  # restored: a server test after it can start


def test_a_refused_start_the_product_catches_still_fails_the_test() -> None:
    """The serving pool's spawner hands any failure back as "the model failed to start", which a
    grader then reports as a graded error: the test would pass without this list."""
    with tiers.refusing_heavy_work():
        with contextlib.suppress(BaseException):  # what the product's spawner does
            subprocess.Popen(["/venv/lib/llama_cpp/bin/llama-server", "-m", "x.gguf"])
        why = tiers.refused_starts()
    assert why is not None and "a llama.cpp program" in why and "@pytest.mark.server" in why
    assert tiers.refused_starts() is None  # this test's own guard is left as it was


def test_a_lazy_module_is_imported_on_first_use_only() -> None:
    lazy = tiers.lazy("json")
    with pytest.raises(AttributeError):
        _ = lazy.__test__  # what pytest asks while collecting: no import
    assert lazy.dumps([1]) == "[1]"
