"""Find and load base models; convert GGUF bases once into a Hugging Face cache in the run's dtype.

Loading a GGUF base through transformers dequantizes it on every load (~15 s for
SmolLM2-135M). The first load therefore writes a plain copy to ``cache_dir/<name>@<dtype>/``
(model + tokenizer) one tensor at a time (:mod:`tunegate.training.gguf_convert`: the process
never holds the whole copy); later loads read that folder (~0.1 s for the weights). The copy
holds the dtype training loads the base in (:mod:`tunegate.training.precision`: bfloat16 on a
CPU that computes it), never a float32 copy "just in case": for a 1B base that is 2.5 GB on
disk instead of 5, and every job on the base shares it. A quantized GGUF (Q4_K_M, Q8_0) is
dequantized once into that dtype. The copy is written to a temporary folder and renamed into
place under a file lock, so two processes never convert at once and nobody sees half a cache.

A cache folder carries :data:`CACHE_MARKER`; the catalog skips such folders, so a models
folder that is also the model cache lists no copy as a base model of its own.

The tokenizer loads on its own (:func:`load_tokenizer`, then :func:`load_model`), so that a run
checks its data before it spends time on weights: ~0.4 s from the cache, ~6 s straight from a
GGUF not converted yet (a conversion takes ~25 s).

Heavy imports (torch, transformers) happen inside the loading functions. (Finding the embedded
GGUF is the catalog's job: tunegate.domain.catalog.embedded_gguf.)
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import gc
import json
import os
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from tunegate.domain.catalog import CACHE_MARKER
from tunegate.errors import is_disk_full
from tunegate.training.errors import UNSUPPORTED_BASE_MODEL, TrainingFailed
from tunegate.training.messages import Emit, note
from tunegate.training.spec import BaseModelRef

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase



DTYPES = ("bfloat16", "float16", "float32")


def cache_folder(ref: BaseModelRef, cache_dir: str | Path, dtype: str) -> Path:
    """Where the copy of a GGUF base in ``dtype`` lives (a name safe as one path component;
    ``@`` never occurs in the safe name, so no base's copy is named like another's)."""
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}")
    return Path(cache_dir) / f"{_safe_name(ref)}@{dtype}"


def _safe_name(ref: BaseModelRef) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", ref.name).strip("._") or "model"


def resolve_hf_folder(ref: BaseModelRef, cache_dir: str | Path, emit: Emit | None = None, *,
                      tokenizer: PreTrainedTokenizerBase | None = None,
                      dtype: str = "float32") -> Path:
    """A Hugging Face folder (model + tokenizer) for ``ref``, converting a GGUF base to
    ``dtype`` on first use (with ``tokenizer``, the GGUF's already loaded, if given).

    Promises: the returned folder is complete (``config.json``, weights, tokenizer files).
    """
    if ref.kind == "hf":
        folder = Path(ref.path)
        if not (folder / "config.json").is_file():
            raise TrainingFailed(UNSUPPORTED_BASE_MODEL,
                                 f"Base model {ref.name}: {folder} has no config.json.", "model")
        return folder
    if ref.kind != "gguf" or not ref.gguf_file:
        raise TrainingFailed(UNSUPPORTED_BASE_MODEL,
                             f"Base model {ref.name}: unknown kind {ref.kind!r}.", "model")
    target = cache_folder(ref, cache_dir, dtype)
    if _is_complete(target):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with _lock(target.with_name(target.name + ".lock")):
        if not _is_complete(target):  # another process may have finished while we waited
            if emit:
                emit(note(f"Converting base model {ref.name} from GGUF to {dtype} "
                          "(first use only)"))
            _convert_gguf(ref, target, tokenizer, dtype)
    return target


def cached_folder(ref: BaseModelRef, cache_dir: str | Path) -> Path | None:
    """The Hugging Face folder of ``ref`` if it is there without converting anything (an HF
    base, or a GGUF base converted before, in any dtype: the tokenizer is the same), else
    ``None``. Torch-free; nothing is checked but the cache's completeness."""
    if ref.kind == "hf":
        return Path(ref.path)
    if ref.kind != "gguf":
        return None
    safe = _safe_name(ref)
    # The dtype copies, then the one folder of versions that kept a single float32 copy.
    candidates = [Path(cache_dir) / f"{safe}@{dtype}" for dtype in DTYPES]
    return next((folder for folder in [*candidates, Path(cache_dir) / safe]
                 if _is_complete(folder)), None)


def load_tokenizer(ref: BaseModelRef, cache_dir: str | Path) -> PreTrainedTokenizerBase:
    """The base's tokenizer, without its weights: from the converted copy when there is one,
    else read from the GGUF (nothing is converted here).

    Raises ``TrainingFailed`` (unsupported_base_model) when it cannot be loaded.
    """
    from transformers import AutoTokenizer

    try:
        if ref.kind == "gguf" and ref.gguf_file and cached_folder(ref, cache_dir) is None:
            if not (Path(ref.path) / ref.gguf_file).is_file():
                raise TrainingFailed(UNSUPPORTED_BASE_MODEL, f"Base model file "
                                     f"{Path(ref.path) / ref.gguf_file} is missing.", "model")
            return AutoTokenizer.from_pretrained(ref.path, gguf_file=ref.gguf_file)
        folder = cached_folder(ref, cache_dir) if ref.kind == "gguf" else None
        return AutoTokenizer.from_pretrained(folder or resolve_hf_folder(ref, cache_dir))
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        _raise_if_disk_full(exc)
        raise TrainingFailed(UNSUPPORTED_BASE_MODEL, f"The tokenizer of base model {ref.name} "
                             f"could not be loaded: {exc}", "model") from exc


def _raise_if_disk_full(exc: BaseException) -> None:
    """A full disk is not the model's fault (loading writes: the cache, and the progress bars
    to the run's log): it leaves as itself, and run_training reports it as such."""
    if is_disk_full(exc):
        raise exc


def load_model(ref: BaseModelRef, cache_dir: str | Path, *, attn_implementation: str = "sdpa",
               emit: Emit | None = None, tokenizer: PreTrainedTokenizerBase | None = None,
               dtype: str = "float32") -> PreTrainedModel:
    """The base model in ``dtype`` ("float32", "bfloat16" or "float16") on CPU (the caller
    moves it), converting a GGUF base to ``dtype`` on first use (saving ``tokenizer``, the one
    :func:`load_tokenizer` gave, if given). A Hugging Face base is cast tensor by tensor while
    loading, so no copy in another dtype is ever made.

    Raises ``TrainingFailed`` (unsupported_base_model) when it is not a loadable causal LM.
    """
    import torch
    from transformers import AutoModelForCausalLM

    folder = resolve_hf_folder(ref, cache_dir, emit, tokenizer=tokenizer, dtype=dtype)
    try:
        return AutoModelForCausalLM.from_pretrained(folder, dtype=getattr(torch, dtype),
                                                    attn_implementation=attn_implementation)
    except (OSError, ValueError, KeyError) as exc:
        _raise_if_disk_full(exc)
        raise TrainingFailed(UNSUPPORTED_BASE_MODEL,
                             f"Base model {ref.name} could not be loaded: {exc}", "model") from exc


def load_base(ref: BaseModelRef, cache_dir: str | Path, *, attn_implementation: str = "sdpa",
              emit: Emit | None = None) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """The base model (:func:`load_model`) and its tokenizer (:func:`load_tokenizer`)."""
    model = load_model(ref, cache_dir, attn_implementation=attn_implementation, emit=emit)
    return model, load_tokenizer(ref, cache_dir)


def _is_complete(folder: Path) -> bool:
    # The rename is the commit point: a folder under the final name is complete.
    return (folder / "config.json").is_file() and (folder / CACHE_MARKER).is_file()


@contextlib.contextmanager
def _lock(path: Path) -> Iterator[None]:
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # released when the file closes, even on a crash
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _return_freed_memory() -> None:
    """Hand what the conversion freed back to the OS before the weights load: glibc keeps
    freed heap for reuse, which training then counts on top (measured on a Llama-3.2-1B shape
    with gradient checkpointing: the first job's peak 4.53 GB without, 4.44 with; a later job,
    which converts nothing, 4.32)."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to ask
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _convert_gguf(ref: BaseModelRef, target: Path,
                  tokenizer: PreTrainedTokenizerBase | None = None,
                  dtype: str = "float32") -> None:
    import torch
    from transformers import AutoTokenizer

    from tunegate.training import gguf_convert

    source = Path(ref.path) / str(ref.gguf_file)
    if not source.is_file():
        raise TrainingFailed(UNSUPPORTED_BASE_MODEL, f"Base model file {source} is missing.", "model")
    started = time.monotonic()
    temporary = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    shutil.rmtree(temporary, ignore_errors=True)
    try:
        if tokenizer is None:
            tokenizer = AutoTokenizer.from_pretrained(ref.path, gguf_file=ref.gguf_file)
        gguf_convert.convert(source, temporary, getattr(torch, dtype))
        _return_freed_memory()
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        shutil.rmtree(temporary, ignore_errors=True)
        _raise_if_disk_full(exc)
        raise TrainingFailed(UNSUPPORTED_BASE_MODEL,
                             f"Base model {ref.name} could not be loaded from GGUF: {exc}",
                             "model") from exc
    tokenizer.save_pretrained(temporary)
    stat = source.stat()
    (temporary / CACHE_MARKER).write_text(json.dumps({
        "gguf": str(source), "size": stat.st_size, "mtime": int(stat.st_mtime), "dtype": dtype,
        "seconds": round(time.monotonic() - started, 1)}))
    if target.exists():  # an incomplete leftover (no marker): replace it
        shutil.rmtree(target)
    os.replace(temporary, target)
