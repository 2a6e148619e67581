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
mid-merge leaves no copy that looks whole.

Any process may merge into the folder (each API process has its own pool, and a worker builds
the same service object), so nothing here trusts being alone. A merge holds an exclusive
``flock`` on ``<copy>.lock`` while it runs: a second merge of the same model, in another thread
or process, waits for it and then uses its copy. Leftovers of a merge that was killed are
removed by the next merge, for each copy whose lock nobody holds; never on construction,
which every process does (a worker starting once deleted the files of a merge the API was
making, and the chat that needed it failed).

Before merging, the free space is checked against what the merge writes (the F16 copy and the
Q8_0 one, side by side for a moment): one that cannot fit raises ``MergeNoSpace`` at once,
instead of llama.cpp failing halfway with its own output.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

from tunegate.domain.architectures import read_gguf_header
from tunegate.serving import binaries

QUANT = "Q8_0"
PARTIAL = ".partial"
LOCK = ".lock"
# Bytes per weight of what a merge writes: the F16 copy (2) and its Q8_0 quantization (34 bytes
# per block of 32), both on disk until the F16 one is removed.
_MERGE_BYTES_PER_WEIGHT = 2 + 34 / 32
# Below this much free space, a failed llama.cpp program is taken to have met a full disk
# (llama-export-lora does not say so; it fails or writes a short file that the next step refuses).
_FULL_DISK_MARGIN = 16 << 20


class MergeError(Exception):
    """llama.cpp could not merge or quantize. The message names the program and how it ended
    (it reaches API clients, so it has no paths); ``output`` is the end of what it printed, for
    the server log."""

    def __init__(self, message: str, output: str = ""):
        super().__init__(message)
        self.output = output


class MergeNoSpace(MergeError):
    """The disk under the merged copies has no room for this merge; the message says how much
    it needs and has, without paths."""


def _identity(path: Path) -> str:
    stat = path.stat()
    return f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"


def _free_bytes(folder: Path) -> int:
    return shutil.disk_usage(folder).free


@contextlib.contextmanager
def _exclusive(path: Path, wait: bool = True) -> Iterator[bool]:
    """Hold an exclusive ``flock`` on ``path`` (created if missing), between threads and
    processes alike; yields False, holding nothing, when ``wait`` is off and another holds it.

    The holder removes the file when it lets go, so lock files do not pile up. A waiter that
    then gets the lock of the removed file sees that it is not the file at ``path`` any more and
    locks the new one: two holders of one name at once are impossible.
    """
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            yield False
            return
        try:
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                break
        except FileNotFoundError:
            pass
        os.close(fd)  # its holder removed it while we waited: lock the file there now
    try:
        yield True
    finally:
        path.unlink(missing_ok=True)
        os.close(fd)


class MergedModels:
    """Merged, re-quantized copies of fine-tuned models, least recently used deleted first."""

    def __init__(self, folder: Path, max_bytes: int):
        self.folder = folder
        self.max_bytes = max_bytes
        folder.mkdir(parents=True, exist_ok=True)

    def merged(self, base: Path, adapter: Path) -> Path:
        """The merged copy of ``base`` + ``adapter``, made now if it is not kept.

        Raises ``MergeNoSpace`` when the disk cannot hold the merge, ``MergeError`` when
        llama.cpp fails otherwise; neither leaves a file behind.
        """
        key = hashlib.sha256(f"{_identity(base)}|{_identity(adapter)}".encode()).hexdigest()[:24]
        target = self.folder / f"{key}.gguf"
        with _exclusive(self.folder / f"{key}{LOCK}"):
            if target.is_file():  # also when another process made it while this one waited
                os.utime(target)  # recently used
                return target
            self._remove_leftovers(key)
            self._make(base, adapter, target)
        self._evict(keep=target)
        return target

    def copies(self) -> list[Path]:
        """The kept copies, least recently used first."""
        return sorted(self.folder.glob("*.gguf"), key=lambda path: path.stat().st_mtime_ns)

    def _remove_leftovers(self, holding: str) -> None:
        """Remove the partial files of merges that were killed: those of ``holding`` (whose
        lock the caller holds) and of every copy whose lock is free. A merge in progress holds
        its lock, so its files are left alone."""
        by_key: dict[str, list[Path]] = {}
        for path in self.folder.iterdir():
            if path.name.endswith((PARTIAL, LOCK)):
                by_key.setdefault(path.name.split(".", 1)[0], []).append(path)
        for key, paths in by_key.items():
            partials = [path for path in paths if path.name.endswith(PARTIAL)]
            if key == holding:
                _unlink(partials)
                continue
            with _exclusive(self.folder / f"{key}{LOCK}", wait=False) as free:
                if free:  # its lock file (a killed holder's) goes as the lock is let go
                    _unlink(partials)

    def _make(self, base: Path, adapter: Path, target: Path) -> None:
        self._check_space(base)
        f16 = target.with_name(f"{target.stem}.f16.gguf{PARTIAL}")
        quantized = target.with_name(f"{target.name}{PARTIAL}")
        try:
            self._run_tool([binaries.program(binaries.EXPORT_LORA), "-m", str(base), "--lora",
                            str(adapter), "-o", str(f16)])
            self._run_tool([binaries.program(binaries.QUANTIZE), "--allow-requantize",
                            *_keep_unadapted(base), str(f16), str(quantized), QUANT])
            quantized.rename(target)
        finally:
            _unlink([f16, quantized])

    def _check_space(self, base: Path) -> None:
        needed = int(_weights(base) * _MERGE_BYTES_PER_WEIGHT)
        free = _free_bytes(self.folder)
        if free < needed:
            raise MergeNoSpace(_no_space(needed, free))

    def _run_tool(self, argv: list[str | Path]) -> None:
        try:
            _run(argv)
        except MergeError as exc:
            free = _free_bytes(self.folder)  # before the caller removes the partial files
            if free < _FULL_DISK_MARGIN or os.strerror(errno.ENOSPC) in exc.output:
                raise MergeNoSpace(f"the disk filled up while merging ({free >> 20} MB free "
                                   "left)", output=exc.output) from exc
            raise

    def _evict(self, keep: Path) -> None:
        copies = self.copies()
        total = sum(path.stat().st_size for path in copies)
        for path in copies:
            if total <= self.max_bytes:
                break
            if path != keep:
                total -= path.stat().st_size
                path.unlink(missing_ok=True)  # a process serving it keeps its mapping


def _unlink(paths: list[Path]) -> None:
    for path in paths:
        path.unlink(missing_ok=True)


def _no_space(needed: int, free: int) -> str:
    return (f"merging it for serving needs about {needed >> 20} MB of disk space and the data "
            f"folder's disk has {free >> 20} MB free")


def _weights(base: Path) -> int:
    """How many weights the base model has (from its GGUF header)."""
    return read_gguf_header(base).n_weights


# Tensors LoRA never adapts (tunegate.training.lora): merging copies them from the base as they
# are, and quantizing keeps them at the base's type, exact and as fast. The (tied) output
# projection is a fifth of SmolLM2's work per token: at Q8_0 it cost 6 points of speed.
_UNADAPTED = {"token_embd.weight": "--token-embedding-type", "output.weight": "--output-tensor-type"}


def _keep_unadapted(base: Path) -> list[str]:
    import gguf  # numpy only: the names of ggml's types

    types = {name: gguf.GGMLQuantizationType(tensor.type_id).name
             for name, tensor in read_gguf_header(base).tensors.items() if name in _UNADAPTED}
    return [arg for name, kind in types.items() for arg in (_UNADAPTED[name], kind)]


def _run(argv: list[str | Path]) -> None:
    result = subprocess.run([str(part) for part in argv], env=binaries.environment(),
                            stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        tail = " | ".join((result.stdout + result.stderr).strip().splitlines()[-3:])
        raise MergeError(f"merging the adapter failed: {Path(str(argv[0])).name} exited with "
                         f"{result.returncode}", output=tail)
