"""A Hugging Face folder converted to one GGUF file by llama.cpp's own ``convert_hf_to_gguf.py``.

llama.cpp serves GGUF files only, so ``tunegate models add FOLDER`` converts a folder once and
the GGUF becomes the base model: it trains (transformers dequantizes it, as for SmolLM2), its
adapters export, and it serves, all from the same weights.

The script and the ``gguf-py`` it was written against come from the pinned llama-cpp-python
sdist (``make setup`` puts them in ``llama_cpp/convert``, :func:`converter_script`). That
``gguf-py`` is newer than the ``gguf`` package pinned for transformers, so it is never
installed: the script runs in a child process with it first on ``PYTHONPATH``. The child runs
this interpreter, which has torch, transformers and sentencepiece (the ``train`` extra).

Output type ``auto``: the converter keeps bfloat16 checkpoints bfloat16 and float16 ones
float16, so the usual published checkpoints convert without rounding (and a bfloat16 model's
range is not squeezed into float16's); float32 ones become float16, ~2**-11 relative rounding
instead of bfloat16's ~2**-8 (SmolLM2's logits: within 0.09 of transformers' instead of 0.5).
transformers' GGUF loader and llama.cpp (base and LoRA) read both types.
"""

from __future__ import annotations

import collections
import importlib.util
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from tunegate.domain.architectures import UnsupportedArchitecture, architecture_of
from tunegate.domain.catalog import ModelNotAdded

SCRIPT = "convert_hf_to_gguf.py"
OUTPUT_TYPE = "auto"
_LINES_KEPT = 40  # of the converter's output, to say why it failed


class ConversionFailed(ModelNotAdded):
    """The converter could not make a GGUF of the folder; ``str()`` says why."""


def converter_script() -> Path:
    """llama.cpp's ``convert_hf_to_gguf.py`` as ``make setup`` installed it (found without
    importing ``llama_cpp``); raises :class:`ConversionFailed` naming the fix."""
    spec = importlib.util.find_spec("llama_cpp")
    if spec is not None and spec.submodule_search_locations:
        script = Path(next(iter(spec.submodule_search_locations))) / "convert" / SCRIPT
        if script.is_file():
            return script
    raise ConversionFailed(f"llama.cpp's {SCRIPT} is not installed: run `make setup` (it puts "
                           "the converter of the pinned llama.cpp in llama_cpp/convert)")


def convert_hf_folder(folder: Path, output: Path, *, script: Path | None = None,
                      progress: Callable[[str], None] | None = None) -> None:
    """Write ``output``, the GGUF of the Hugging Face ``folder``, passing each line the
    converter prints to ``progress``. Raises :class:`ConversionFailed` with the converter's
    last words when it fails or writes something else than a GGUF of the folder's family;
    what it wrote is then removed."""
    expected = architecture_of(folder).gguf_arch  # the caller checked it is supported
    script = script or converter_script()
    command = [sys.executable, str(script), str(folder), "--outtype", OUTPUT_TYPE,
               "--outfile", str(output)]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        part for part in (str(script.parent / "gguf-py"), os.environ.get("PYTHONPATH")) if part))
    env.pop("NO_LOCAL_GGUF", None)  # it would make the script import the venv's older gguf
    last: collections.deque[str] = collections.deque(maxlen=_LINES_KEPT)
    try:
        with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              stdin=subprocess.DEVNULL, env=env, text=True, errors="replace") as child:
            assert child.stdout is not None
            for line in child.stdout:
                last.append(line.rstrip())
                if progress is not None:
                    progress(line.rstrip())
        if child.returncode != 0:
            raise ConversionFailed(f"llama.cpp's {SCRIPT} failed on {folder.name} (exit status "
                                   f"{child.returncode}): {_why(last)}")
        _check_output(output, expected, folder)
    except BaseException:
        output.unlink(missing_ok=True)
        raise


def _why(lines: collections.deque[str]) -> str:
    """The converter's error: the last line that is not empty (a traceback ends with it)."""
    return next((line for line in reversed(lines) if line.strip()), "it printed nothing")


def _check_output(output: Path, expected: str, folder: Path) -> None:
    try:
        written = architecture_of(output).gguf_arch
    except UnsupportedArchitecture as exc:
        raise ConversionFailed(f"llama.cpp's {SCRIPT} wrote no usable GGUF of {folder.name}: "
                               f"{exc}") from None
    if written != expected:
        raise ConversionFailed(f"llama.cpp's {SCRIPT} wrote a {written!r} GGUF of {folder.name}, "
                               f"whose config.json says {expected!r}")
