"""The model families tunegate trains, exports and serves: one table of per-architecture facts.

A base model is accepted only when its architecture is a row here; everything that differs by
family is looked up in that row instead of being assumed from llama:

- ``gguf_arch``: ``general.architecture`` of the GGUF (llama.cpp's name); ``hf_model_types``:
  the ``model_type`` values of a Hugging Face ``config.json`` that llama.cpp converts to it
  (Mistral converts to ``llama``; transformers names a llama GGUF ``mistral`` when its name
  says so).
- ``rope_permuted``: the projections whose rows llama.cpp's ``convert_hf_to_gguf.py`` reorders
  from Hugging Face's "rotate half" rotary layout to ggml's interleaved one, with the head count
  their rows are grouped by. Only the llama family (``LlamaModel.modify_tensors``) does this;
  Qwen, Gemma and Phi-3 use the "NEOX" rope in ggml, which keeps Hugging Face's row order, and
  transformers' GGUF loader un-permutes only ``llama`` (``LlamaTensorProcessor``). A LoRA's
  ``lora_B`` must be reordered exactly like its base weight, so this is the one fact the export
  cannot get wrong.
- ``lora_targets``: the Linear projections LoRA adapts (attention and MLP, never embeddings or
  ``lm_head``, which a llama.cpp LoRA GGUF cannot carry). Phi-3 fuses them (``qkv_proj``,
  ``gate_up_proj``), and so does its GGUF (``attn_qkv``, ``ffn_up``), so the fused update
  converts as one tensor. Hugging Face module names map to GGUF tensor names through the
  ``gguf`` package's ``TensorNameMap`` for ``gguf_arch``.
- ``system_role``: whether the family's chat format has a system turn. Gemma's has none: its
  own template folds a system message into the first user turn, and tunegate always renders
  with the model's own template (training and serving alike), so nothing is rewritten here;
  the flag documents the quirk (docs/training.md, "Base models").

Reading a file's architecture is cheap and torch-free: the GGUF header up to
``general.architecture`` (the first key llama.cpp's writer puts there), or ``model_type`` from
``config.json``; each answer is cached per (path, size, mtime).
"""

from __future__ import annotations

import functools
import json
import math
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Literal


@dataclass(frozen=True)
class Architecture:
    """What tunegate must know about one model family to train, export and serve it."""

    gguf_arch: str
    family: str  # the name people know it by, for messages
    hf_model_types: tuple[str, ...]
    rope_permuted: dict[str, Literal["n_head", "n_head_kv"]]
    lora_targets: tuple[str, ...]
    system_role: bool = True


_SEPARATE = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")

ARCHITECTURES: tuple[Architecture, ...] = (
    Architecture("llama", "Llama (SmolLM2, Llama 2/3, Mistral)", ("llama", "mistral"),
                 {"q_proj": "n_head", "k_proj": "n_head_kv"}, _SEPARATE),
    Architecture("qwen2", "Qwen2/2.5", ("qwen2",), {}, _SEPARATE),
    Architecture("qwen3", "Qwen3", ("qwen3",), {}, _SEPARATE),
    Architecture("gemma2", "Gemma 2", ("gemma2",), {}, _SEPARATE, system_role=False),
    Architecture("gemma3", "Gemma 3 (text)", ("gemma3_text",), {}, _SEPARATE, system_role=False),
    Architecture("phi3", "Phi-3", ("phi3",), {},
                 ("qkv_proj", "o_proj", "gate_up_proj", "down_proj")),
)

_BY_GGUF = {arch.gguf_arch: arch for arch in ARCHITECTURES}
_BY_HF = {model_type: arch for arch in ARCHITECTURES for model_type in arch.hf_model_types}


class UnsupportedArchitecture(Exception):
    """A model whose architecture is not in the table, or whose file says none; ``str()`` is a
    sentence for the operator or the API client."""


def supported_families() -> str:
    """The families that work, for error messages: ``llama (Llama …), qwen2 (…), …``."""
    return ", ".join(f"{arch.gguf_arch} ({arch.family})" for arch in ARCHITECTURES)


def by_gguf_arch(name: str) -> Architecture | None:
    return _BY_GGUF.get(name)


def by_hf_model_type(model_type: str) -> Architecture | None:
    return _BY_HF.get(model_type)


def architecture_of(path: Path) -> Architecture:
    """The table row of a base model: a ``.gguf`` file or a Hugging Face folder.

    Raises :class:`UnsupportedArchitecture` saying why (unreadable file, no architecture, or one
    tunegate cannot export or serve) and which families work.
    """
    name = read_architecture_name(path)
    arch = by_hf_model_type(name) if path.is_dir() else by_gguf_arch(name)
    if arch is None:
        kind = "model_type" if path.is_dir() else "GGUF architecture"
        raise UnsupportedArchitecture(
            f"its {kind} is {name!r}, which tunegate cannot train, export to a llama.cpp LoRA "
            f"and serve. Supported architectures: {supported_families()}.")
    return arch


def read_architecture_name(path: Path) -> str:
    """``general.architecture`` of a GGUF file, or ``model_type`` of a Hugging Face folder's
    ``config.json``. Cached per (path, size, mtime); raises :class:`UnsupportedArchitecture`
    when the file cannot say."""
    try:
        target = path / "config.json" if path.is_dir() else path
        stat = target.stat()
    except OSError as exc:
        raise UnsupportedArchitecture(f"it cannot be read ({exc.strerror})") from exc
    return _read_cached(target, stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=256)
def _read_cached(path: Path, size: int, mtime_ns: int) -> str:
    del size, mtime_ns  # part of the cache key only: a replaced file is read again
    if path.name == "config.json":
        return _config_model_type(path)
    return _gguf_architecture(path)


def _config_model_type(path: Path) -> str:
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise UnsupportedArchitecture(f"its config.json cannot be read: {exc}") from exc
    model_type = config.get("model_type") if isinstance(config, dict) else None
    if not isinstance(model_type, str):
        raise UnsupportedArchitecture("its config.json names no model_type")
    return model_type


# GGUF value types (gguf spec): fixed sizes of the scalars, 8 = string, 9 = array.
_SCALAR_SIZES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
_STRING, _ARRAY = 8, 9
_ARCH_KEY = "general.architecture"
_MAX_KEYS_READ = 64  # llama.cpp's writer puts the architecture first; a few keys is plenty


def _gguf_architecture(path: Path) -> str:
    """Read the GGUF header key by key until ``general.architecture`` (tensors never read)."""
    try:
        with path.open("rb") as f:
            if f.read(4) != b"GGUF":
                raise UnsupportedArchitecture("it is not a GGUF file (no GGUF magic)")
            version, _n_tensors, n_keys = struct.unpack("<IQQ", f.read(20))
            if version < 2:
                raise UnsupportedArchitecture(f"its GGUF version {version} is too old")
            for _ in range(min(n_keys, _MAX_KEYS_READ)):
                key = _read_string(f)
                (value_type,) = struct.unpack("<I", f.read(4))
                if key == _ARCH_KEY and value_type == _STRING:
                    return _read_string(f)
                _skip_value(f, value_type)
    except (OSError, struct.error, UnicodeDecodeError) as exc:
        raise UnsupportedArchitecture(f"its GGUF header cannot be read: {exc}") from exc
    raise UnsupportedArchitecture("its GGUF header names no general.architecture")


def _read_string(f: BinaryIO) -> str:
    (length,) = struct.unpack("<Q", f.read(8))
    if length > 1 << 20:
        raise UnsupportedArchitecture("its GGUF header is damaged (a key of over 1 MiB)")
    return f.read(length).decode("utf-8")


def _skip_value(f: BinaryIO, value_type: int) -> None:
    if value_type == _STRING:
        (length,) = struct.unpack("<Q", f.read(8))
        f.seek(length, 1)
    elif value_type == _ARRAY:
        item_type, count = struct.unpack("<IQ", f.read(12))
        if item_type in _SCALAR_SIZES:
            f.seek(_SCALAR_SIZES[item_type] * count, 1)
        else:
            for _ in range(count):
                _skip_value(f, item_type)
    elif value_type in _SCALAR_SIZES:
        f.seek(_SCALAR_SIZES[value_type], 1)
    else:
        raise UnsupportedArchitecture(f"its GGUF header has an unknown value type {value_type}")


_DEFAULT_ALIGNMENT = 32  # GGUF's, where general.alignment does not say
_SCALAR_FORMATS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?",
                   10: "<Q", 11: "<q", 12: "<d"}


@dataclass(frozen=True)
class GgufTensor:
    """One entry of a GGUF's tensor table: its shape in ggml's order (``ne0``, the input
    features, first), its ggml type (``gguf.GGMLQuantizationType``'s value) and where its
    data starts in the file."""

    shape: tuple[int, ...]
    type_id: int
    offset: int


@dataclass(frozen=True)
class GgufHeader:
    """What a GGUF says about itself without a tensor read: its scalar and string metadata,
    the length of each array (e.g. ``tokenizer.ggml.tokens``: the vocabulary), and its tensor
    table."""

    values: dict[str, int | float | str]
    array_lengths: dict[str, int]
    tensors: dict[str, GgufTensor]

    @property
    def n_weights(self) -> int:
        """How many weights its tensors hold, whatever their quantization."""
        return sum(math.prod(tensor.shape) for tensor in self.tensors.values())


def read_gguf_header(path: Path) -> GgufHeader:
    """The header and tensor table of a GGUF (milliseconds: arrays are skipped, not parsed;
    the gguf package's reader takes 2 s for SmolLM2's 49k-token vocabulary and 8 s for Gemma's
    262k on 2 cores, so everything that needs a header reads it here).
    Raises ``UnsupportedArchitecture`` when it cannot be read."""
    values: dict[str, int | float | str] = {}
    lengths: dict[str, int] = {}
    try:
        with path.open("rb") as f:
            if f.read(4) != b"GGUF":
                raise UnsupportedArchitecture("it is not a GGUF file (no GGUF magic)")
            version, n_tensors, n_keys = struct.unpack("<IQQ", f.read(20))
            if version < 2:
                raise UnsupportedArchitecture(f"its GGUF version {version} is too old")
            for _ in range(n_keys):
                key = _read_string(f)
                (value_type,) = struct.unpack("<I", f.read(4))
                if value_type == _STRING:
                    values[key] = _read_string(f)
                elif value_type in _SCALAR_FORMATS:
                    fmt = _SCALAR_FORMATS[value_type]
                    (values[key],) = struct.unpack(fmt, f.read(struct.calcsize(fmt)))
                elif value_type == _ARRAY:
                    position = f.tell()
                    _, lengths[key] = struct.unpack("<IQ", f.read(12))
                    f.seek(position)
                    _skip_value(f, value_type)
                else:
                    raise UnsupportedArchitecture(f"its GGUF header has an unknown value type "
                                                  f"{value_type}")
            table: dict[str, tuple[tuple[int, ...], int, int]] = {}
            for _ in range(n_tensors):
                name = _read_string(f)
                (n_dims,) = struct.unpack("<I", f.read(4))
                shape = struct.unpack(f"<{n_dims}Q", f.read(8 * n_dims))
                table[name] = (shape, *struct.unpack("<IQ", f.read(12)))  # type, offset
            # Offsets count from the data section, which starts at the next aligned byte.
            alignment = int(values.get("general.alignment", _DEFAULT_ALIGNMENT))
            data_start = -(-f.tell() // alignment) * alignment
    except (OSError, struct.error, UnicodeDecodeError) as exc:
        raise UnsupportedArchitecture(f"its GGUF header cannot be read: {exc}") from exc
    tensors = {name: GgufTensor(shape, type_id, data_start + offset)
               for name, (shape, type_id, offset) in table.items()}
    return GgufHeader(values, lengths, tensors)
