"""Test tiers by cost, not by folder: ``make test-fast`` runs every test that loads no torch
model, starts no tunegate process (server, worker, trainer child) and runs no llama.cpp program,
wherever it lives; ``make test`` runs them all.

A test is heavy when it carries one of two markers:

- ``model``: it imports torch (a real or a tiny model, a trainer in process);
- ``server``: it starts a tunegate process or a llama.cpp program. Every test of ``tests/e2e``
  and ``tests/inference`` is one, and so is every test marked ``e2e`` or ``slow``.

The fast tier keeps itself honest: under ``pytest --tier fast`` (what ``make test-fast`` runs)
a test that imports torch, or starts such a process, fails at once, saying which marker it
lacks. A heavy test is never dropped silently from the fast tier's view, and a cheap test is
never left out of it for want of a marker.
"""

from __future__ import annotations

import importlib
import importlib.abc
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

HEAVY = ("model", "server")
# Folders whose every test starts a server or a llama.cpp program.
SERVER_FOLDERS = ("e2e", "inference")
MODEL_PACKAGES = ("torch", "transformers", "peft")
# Fixtures that build or load a model or a tokenizer (tests/training/conftest.py, tests/export/,
# the converted bases of tests/conftest.py): a test
# that uses one, directly or through another fixture, is a ``model`` test.
MODEL_FIXTURES = frozenset({"tiny_tokenizer", "tiny_base", "make_tiny_adapter", "smol_hf_model",
                            "converted_smollm2", "trained_smollm2", "converted_gemma"})
# Fixtures that start a real server (tests/conftest.py and the modules that share one).
SERVER_FIXTURES = frozenset({"server", "servers", "alias_server", "cli_server", "keyed_server",
                             "training_server", "keyed_training_server", "gemma_server",
                             "hf_server", "fine_tune"})


def mark_heavy(item: pytest.Item, folder: str) -> None:
    """``server`` for what the folder, the older markers or a server fixture already say starts
    processes; ``model`` for a test that uses a model fixture."""
    fixtures = set(getattr(item, "fixturenames", ()))
    if (folder in SERVER_FOLDERS or item.get_closest_marker("e2e") or item.get_closest_marker("slow")
            or SERVER_FIXTURES & fixtures):
        item.add_marker("server")
    if MODEL_FIXTURES & fixtures:
        item.add_marker("model")


def is_heavy(item: pytest.Item) -> bool:
    return any(item.get_closest_marker(name) for name in HEAVY)


def model_packages_loaded() -> list[str]:
    return [name for name in MODEL_PACKAGES if name in sys.modules]


class _RefuseModelImports(importlib.abc.MetaPathFinder):
    def find_spec(self, name: str, path: Sequence[str] | None, target: Any = None) -> None:
        if name.split(".")[0] in MODEL_PACKAGES:
            pytest.fail(f"this test imports {name} (a model): mark it @pytest.mark.model "
                        "(tests/tiers.py), or keep it torch-free", pytrace=False)


def _heavy_command(args: Any) -> str | None:
    argv = [str(arg) for arg in (args if isinstance(args, (list, tuple)) else [args])]
    for index, arg in enumerate(argv):
        path = Path(arg)  # the real programs, in the llama_cpp package (tests fake others)
        if path.name.startswith("llama-") and "llama_cpp" in path.parts:
            return "a llama.cpp program"
        if arg == "-m" and index + 1 < len(argv) and argv[index + 1].startswith("tunegate"):
            return f"a tunegate process ({' '.join(argv[index + 1:index + 3])})"
    return None


# What the running fast-tier test tried to start. The refusal is raised where the start was
# asked for, which may be a thread of the product that turns any failure into an answer (the
# serving pool's spawner: a model that "failed to start"); the test still fails, by this list.
REFUSED: list[str] = []


def refused_starts() -> str | None:
    """Why the test that just ran fails though it may have passed: what it tried to start."""
    if not REFUSED:
        return None
    return (f"this test starts {REFUSED[0]} (refused, and its failure caught in the product): "
            "mark it @pytest.mark.server (tests/tiers.py)")


@contextmanager
def refusing_heavy_work() -> Iterator[None]:
    """While a fast-tier test runs: torch cannot be imported, and no tunegate process or
    llama.cpp program can be started."""
    original_init = subprocess.Popen.__init__

    def checked_init(self: subprocess.Popen[Any], args: Any, *rest: Any, **options: Any) -> None:
        what = _heavy_command(args)
        if what is not None:
            REFUSED.append(what)  # the product may catch the failure below: see refused_starts
            pytest.fail(f"this test starts {what}: mark it @pytest.mark.server (tests/tiers.py)",
                        pytrace=False)
        original_init(self, args, *rest, **options)

    outer = REFUSED[:]  # a guard inside a guarded test (tests/unit/test_tiers.py) keeps its own
    REFUSED.clear()
    finder = _RefuseModelImports()
    sys.meta_path.insert(0, finder)
    subprocess.Popen.__init__ = checked_init  # type: ignore[method-assign]
    try:
        yield
    finally:
        subprocess.Popen.__init__ = original_init  # type: ignore[method-assign]
        sys.meta_path.remove(finder)
        REFUSED[:] = outer


class LazyModule:
    """A module imported on first use: a test module that names torch at its top stays
    collectable in the fast tier, and only its tests that touch torch need the ``model``
    marker (and fail without it there)."""

    def __init__(self, name: str):
        self._name = name

    def __getattr__(self, attribute: str) -> Any:
        # pytest looks a module's names over for its own attributes while collecting: those
        # are not a use.
        if attribute.startswith(("_", "pytest")):
            raise AttributeError(attribute)
        return getattr(importlib.import_module(self._name), attribute)


def lazy(name: str) -> Any:
    return LazyModule(name)
