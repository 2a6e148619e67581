"""Where llama.cpp's programs are: ``llama-server``, ``llama-export-lora``, ``llama-quantize``.

``make setup`` builds them once from the sources vendored in the pinned ``llama-cpp-python``
sdist, with the same portable flags as the Python bindings, and installs them in the
``llama_cpp`` package's folder (``llama_cpp/bin``, next to ``llama_cpp/lib`` with the shared
libraries they link). ``TUNEGATE_LLAMA_BIN`` points at another folder (a llama.cpp of your own,
a CUDA build). Found without importing ``llama_cpp``: the API process never loads llama.cpp.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

SERVER = "llama-server"
EXPORT_LORA = "llama-export-lora"
QUANTIZE = "llama-quantize"


class MissingProgram(Exception):
    """A llama.cpp program tunegate needs is not installed."""


def _package_dir() -> Path | None:
    spec = importlib.util.find_spec("llama_cpp")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _folders() -> list[Path]:
    folders = []
    if os.environ.get("TUNEGATE_LLAMA_BIN"):
        folders.append(Path(os.environ["TUNEGATE_LLAMA_BIN"]))
    package = _package_dir()
    if package is not None:
        folders.append(package / "bin")
    return folders


def program(name: str) -> Path:
    """The path of llama.cpp's program ``name``; raises ``MissingProgram`` naming the fix."""
    for folder in _folders():
        if (folder / name).is_file():
            return folder / name
    found = shutil.which(name)
    if found:
        return Path(found)
    raise MissingProgram(f"{name} is not installed: run `make setup` (it builds llama.cpp's "
                         "programs), or set TUNEGATE_LLAMA_BIN to a folder that has it")


def environment() -> dict[str, str]:
    """The environment for a llama.cpp program: the bindings' shared libraries on the loader's
    path (the programs link them).

    OpenMP's wait policy is left alone on purpose: with ``OMP_WAIT_POLICY=PASSIVE`` threads sleep
    between graph operations, and SmolLM2 generated 28 instead of 80 tokens/s on 2 threads.
    """
    env = dict(os.environ)
    package = _package_dir()
    if package is not None and (package / "lib").is_dir():
        env["LD_LIBRARY_PATH"] = os.pathsep.join(
            part for part in (str(package / "lib"), env.get("LD_LIBRARY_PATH", "")) if part)
    return env
