"""Fine-tuned models merged into their base for serving, in a folder of bounded size.

llama.cpp applies a LoRA adapter as extra graph operations on every adapted projection (four
per projection, 840 per token for SmolLM2 with all seven targets): served that way, a fine-tuned
model runs at about 80 % of its base's speed. A merged copy runs at about 90 %: the adapter is
folded into the weights by llama.cpp's ``llama-export-lora`` (merged tensors come out as F16)
and those tensors quantized to Q8_0 by ``llama-quantize``, fine enough to keep small
fine-tuning deltas (F16 itself runs at two thirds of the Q4_1 base's speed on CPUs). The
downloadable adapter GGUF is untouched: this is a serving cache only.

Copies are named by what they were made from (paths, sizes and mtimes of base and adapter), so
a changed adapter is merged again; the least recently used copies are deleted beyond
``max_bytes``. A copy is written under a temporary name and renamed when complete, so a crash
mid-merge leaves no copy that looks whole (the leftovers are swept on start).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import threading
from pathlib import Path

from tunegate.serving import binaries

QUANT = "Q8_0"
PARTIAL = ".partial"


class MergeError(Exception):
    """llama.cpp could not merge or quantize; the message carries its last output."""


def _identity(path: Path) -> str:
    stat = path.stat()
    return f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"


class MergedModels:
    """Merged, re-quantized copies of fine-tuned models, least recently used deleted first."""

    def __init__(self, folder: Path, max_bytes: int):
        self.folder = folder
        self.max_bytes = max_bytes
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        folder.mkdir(parents=True, exist_ok=True)
        for leftover in folder.glob(f"*{PARTIAL}"):  # a merge that was killed
            leftover.unlink(missing_ok=True)

    def merged(self, base: Path, adapter: Path) -> Path:
        """The merged copy of ``base`` + ``adapter``, made now if it is not kept."""
        key = hashlib.sha256(f"{_identity(base)}|{_identity(adapter)}".encode()).hexdigest()[:24]
        target = self.folder / f"{key}.gguf"
        with self._lock(key):
            if target.is_file():
                os.utime(target)  # recently used
                return target
            self._make(base, adapter, target)
        self._evict(keep=target)
        return target

    def copies(self) -> list[Path]:
        """The kept copies, least recently used first."""
        return sorted(self.folder.glob("*.gguf"), key=lambda path: path.stat().st_mtime_ns)

    def _lock(self, key: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(key, threading.Lock())

    def _make(self, base: Path, adapter: Path, target: Path) -> None:
        f16 = target.with_name(f"{target.stem}.f16.gguf{PARTIAL}")
        quantized = target.with_name(f"{target.name}{PARTIAL}")
        try:
            _run([binaries.program(binaries.EXPORT_LORA), "-m", str(base), "--lora", str(adapter),
                  "-o", str(f16)])
            _run([binaries.program(binaries.QUANTIZE), "--allow-requantize",
                  *_keep_unadapted(base), str(f16), str(quantized), QUANT])
            quantized.rename(target)
        finally:
            f16.unlink(missing_ok=True)
            quantized.unlink(missing_ok=True)

    def _evict(self, keep: Path) -> None:
        copies = self.copies()
        total = sum(path.stat().st_size for path in copies)
        for path in copies:
            if total <= self.max_bytes:
                break
            if path != keep:
                total -= path.stat().st_size
                path.unlink(missing_ok=True)  # a process serving it keeps its mapping


# Tensors LoRA never adapts (tunegate.training.lora): merging copies them from the base as they
# are, and quantizing keeps them at the base's type, exact and as fast. The (tied) output
# projection is a fifth of SmolLM2's work per token: at Q8_0 it cost 6 points of speed.
_UNADAPTED = {"token_embd.weight": "--token-embedding-type", "output.weight": "--output-tensor-type"}


def _keep_unadapted(base: Path) -> list[str]:
    import gguf  # numpy only; reads the header

    types = {tensor.name: tensor.tensor_type.name for tensor in gguf.GGUFReader(str(base)).tensors
             if tensor.name in _UNADAPTED}
    return [arg for name, kind in types.items() for arg in (_UNADAPTED[name], kind)]


def _run(argv: list[str | Path]) -> None:
    result = subprocess.run([str(part) for part in argv], env=binaries.environment(),
                            stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        tail = " | ".join((result.stdout + result.stderr).strip().splitlines()[-3:])
        raise MergeError(f"{Path(str(argv[0])).name} failed ({result.returncode}): {tail}")
