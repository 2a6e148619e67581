"""A fine-tuned model's adapter on disk, in its two forms, and their downloads.

The ``path`` of a fine-tuned model or checkpoint row is a folder holding, side by side,
``adapter/`` (the PEFT folder: ``adapter_config.json`` + ``adapter_model.safetensors``) and
``adapter.gguf`` (the same adapter as a llama.cpp LoRA GGUF, for ``llama-server --lora``).
"""

from __future__ import annotations

import shutil
import tempfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from tunegate.domain.models import FineTunedModel
from tunegate.errors import NotFound

ADAPTER_GGUF = "adapter.gguf"
PEFT_FOLDER = "adapter"
FORMATS = ("gguf", "peft")
CHUNK = 256 * 1024
SPOOL_IN_MEMORY = 8 * 1024 * 1024


def gguf_file(model: FineTunedModel) -> Path | None:
    """The llama.cpp LoRA GGUF of ``model``, if it was written."""
    path = Path(model.path) / ADAPTER_GGUF
    return path if path.is_file() else None


def peft_folder(model: FineTunedModel) -> Path | None:
    path = Path(model.path) / PEFT_FOLDER
    return path if path.is_dir() else None


def remove(model: FineTunedModel) -> None:
    """Delete the model's adapter files (both forms); a checkpoint's whole folder goes."""
    folder = Path(model.path)
    if model.kind == "checkpoint":
        shutil.rmtree(folder, ignore_errors=True)
        return
    shutil.rmtree(folder / PEFT_FOLDER, ignore_errors=True)
    (folder / ADAPTER_GGUF).unlink(missing_ok=True)


@dataclass(frozen=True)
class Download:
    """An adapter ready to send: its bytes (as chunks) and how to describe them."""

    filename: str
    media_type: str
    size: int
    chunks: Iterator[bytes]
    base_model: str


def download(model: FineTunedModel, format: str) -> Download:
    """``format="gguf"``: the ``adapter.gguf`` bytes; ``"peft"``: a zip of the PEFT folder.

    Raises ``NotFound`` (``adapter_not_found``) when that form is missing, e.g. the GGUF of a
    model whose base is a Hugging Face folder (llama.cpp adapters need a GGUF base).
    """
    stem = model.id.replace(":", "-")
    if format == "gguf":
        path = gguf_file(model)
        if path is None:
            raise NotFound(f"The model {model.id} has no llama.cpp (GGUF) adapter; its base "
                           "model is not a GGUF file or the export failed.", param="format",
                           code="adapter_not_found")
        return Download(f"{stem}.gguf", "application/octet-stream", path.stat().st_size,
                        _file_chunks(path), model.base_model)
    folder = peft_folder(model)
    if folder is None:
        raise NotFound(f"The model {model.id} has no PEFT adapter folder.", param="format",
                       code="adapter_not_found")
    spool, size = _zip(folder, stem)
    return Download(f"{stem}.zip", "application/zip", size, _spool_chunks(spool),
                    model.base_model)


def _file_chunks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as source:
        while chunk := source.read(CHUNK):
            yield chunk


def _zip(folder: Path, root: str) -> tuple[IO[bytes], int]:
    """The folder zipped (stored: safetensors do not compress) under ``root/``, built now so
    that a failure is an error status rather than a truncated download."""
    spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY)  # noqa: SIM115
    try:
        with zipfile.ZipFile(spool, "w", compression=zipfile.ZIP_STORED) as archive:
            for path in sorted(folder.rglob("*")):
                if path.is_file():
                    archive.write(path, f"{root}/{path.relative_to(folder).as_posix()}")
        size = spool.tell()
        spool.seek(0)
    except BaseException:
        spool.close()
        raise
    return spool, size  # type: ignore[return-value]


def _spool_chunks(spool: IO[bytes]) -> Iterator[bytes]:
    try:
        while chunk := spool.read(CHUNK):
            yield chunk
    finally:
        spool.close()
