"""Export a PEFT LoRA adapter as a llama.cpp LoRA GGUF.

llama.cpp applies a GGUF LoRA as ``y = W x + (alpha / r) * B (A x)`` for every base tensor
``<name>`` that has ``<name>.lora_a`` (A) and ``<name>.lora_b`` (B) in the adapter file, where
``alpha`` is the file's ``adapter.lora.alpha`` and ``r`` is read from each tensor's shape.
This module writes exactly that file from a PEFT folder (``adapter_config.json`` +
``adapter_model.safetensors``), using only the pip ``gguf`` package and numpy: no llama.cpp
checkout, no torch, so the worker can export without loading the training stack.

Things PEFT can express but this format cannot (trained full modules, DoRA, LoRA biases, ...)
are refused with :class:`ExportError` instead of being silently dropped.
"""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gguf
import numpy as np

from tunegate.domain import architectures

__all__ = ["ExportError", "export_lora_gguf"]

_PEFT_PREFIX = "base_model.model."
_LORA_SUFFIXES = {".lora_A.weight": "lora_a", ".lora_B.weight": "lora_b"}
_BASE_COPY_SUFFIX = ".base_layer.weight"

# adapter_config.json settings that change what the adapter computes in ways a GGUF LoRA
# (only A and B per linear layer) cannot carry. Value: why, for the error message.
_UNSUPPORTED_CONFIG: dict[str, str] = {
    "modules_to_save": "it trains whole modules (modules_to_save); llama.cpp LoRA GGUF holds "
    "only low-rank A/B pairs",
    "use_dora": "it is a DoRA adapter (use_dora); llama.cpp has no DoRA magnitude vectors",
    "lora_bias": "it trains a bias on lora_B (lora_bias)",
    "fan_in_fan_out": "fan_in_fan_out is set (Conv1D-style weights), not a llama Linear layout",
    "trainable_token_indices": "it trains token embeddings (trainable_token_indices)",
    "layer_replication": "it replicates layers (layer_replication), which changes the base",
    "alora_invocation_tokens": "it is an activated LoRA (aLoRA), which tunegate does not export",
    "target_parameters": "it targets raw parameters (target_parameters), not Linear modules",
    "use_qalora": "it is a QA-LoRA adapter (use_qalora)",
}


class ExportError(Exception):
    """The adapter cannot be written as a llama.cpp LoRA GGUF; the message says why."""


@dataclass(frozen=True)
class _Base:
    """What the export needs to know about the base GGUF."""

    arch: str
    rope_permuted: dict[str, str]  # HF projection -> the head count its rows are grouped by
    name: str | None
    head_counts: dict[str, int]  # "n_head" and "n_head_kv"
    tensor_shapes: dict[str, tuple[int, ...]]  # GGUF name -> ggml shape (ne0 = input features)
    name_map: gguf.TensorNameMap


def export_lora_gguf(
    adapter_dir: Path, base_gguf: Path, out_path: Path, *, name: str | None = None
) -> Path:
    """Write ``adapter_dir`` (a PEFT LoRA folder) as a llama.cpp LoRA GGUF at ``out_path``.

    Promises: when this returns, ``out_path`` is a complete file that llama.cpp loads on top of
    ``base_gguf`` (``--lora``) and that computes, for every adapted layer, the same update as
    PEFT: ``W + scaling * B @ A`` with PEFT's per-module scaling (``lora_alpha / r``, rslora,
    ``rank_pattern`` and ``alpha_pattern`` included). Tensors are written as float32. The file is
    written to a temporary name in the same folder and renamed, so ``out_path`` is never a half
    file, and an existing ``out_path`` is replaced only on success.

    Raises :class:`ExportError` (nothing written) for adapters the format cannot represent
    (modules_to_save, DoRA, embeddings, biases, ...), architectures this module does not know,
    or tensors whose names or shapes do not fit ``base_gguf``.
    """
    adapter_dir, out_path = Path(adapter_dir), Path(out_path)
    config = _read_config(adapter_dir / "adapter_config.json")
    base = _read_base(Path(base_gguf))
    pairs, base_copies = _pair_tensors(_read_safetensors(adapter_dir / "adapter_model.safetensors"))
    for module, shape in base_copies.items():
        gguf_name = _gguf_name(module, base)
        if shape != base.tensor_shapes[gguf_name][::-1]:
            raise ExportError(
                f"the adapter's copy of {module} has shape {shape}, the base's {gguf_name} "
                f"{base.tensor_shapes[gguf_name][::-1]} (resized vocabulary? another base?)"
            )

    alpha = float(config["lora_alpha"])
    tensors: list[tuple[str, np.ndarray]] = []
    for module, (a, b) in sorted(pairs.items(), key=lambda kv: _natural_key(kv[0])):
        gguf_name = _gguf_name(module, base)
        _check_shapes(module, gguf_name, a, b, base)
        # llama.cpp scales every tensor by alpha / rank (rank from the tensor's shape, so
        # rank_pattern needs nothing); PEFT may scale a module differently (rslora,
        # alpha_pattern). Fold the ratio into B so that the product comes out the same.
        factor = _fold_factor(config, module, rank=a.shape[0])
        if factor != 1.0:
            b = (b.astype(np.float64) * factor).astype(np.float32)
        b = _to_gguf_row_order(module, b, base)
        tensors.append((f"{gguf_name}.lora_a", a))
        tensors.append((f"{gguf_name}.lora_b", b))

    _write_atomically(out_path, base, alpha, name or adapter_dir.name, tensors)
    return out_path


def _read_config(path: Path) -> dict[str, Any]:
    """Load adapter_config.json; raise ExportError unless it is a LoRA this format can carry."""
    try:
        config: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ExportError(f"cannot read adapter config {path}: {exc}") from exc
    if config.get("peft_type", "LORA") != "LORA":
        raise ExportError(f"only LoRA adapters can be exported, this is {config['peft_type']}")
    if config.get("bias", "none") != "none":
        raise ExportError(f"cannot export: it trains biases (bias={config['bias']!r})")
    for key, why in _UNSUPPORTED_CONFIG.items():
        if config.get(key):  # absent, None, False, [] and {} all mean "not used"
            raise ExportError(f"cannot export this adapter to GGUF: {why}")
    # llama.cpp reads alpha = 0 as "no scaling" and PEFT would scale by 0: no faithful file
    if not isinstance(config.get("lora_alpha"), int | float) or config["lora_alpha"] <= 0:
        raise ExportError(f"lora_alpha must be positive, got {config.get('lora_alpha')!r}")
    return config


def _read_base(path: Path) -> _Base:
    """Read architecture, head counts and tensor shapes from the base model's GGUF header."""
    try:
        header = architectures.read_gguf_header(path)
    except architectures.UnsupportedArchitecture as exc:
        raise ExportError(f"cannot read base GGUF {path}: {exc}") from exc
    values = header.values
    arch = values.get(gguf.Keys.General.ARCHITECTURE)
    row = architectures.by_gguf_arch(str(arch))
    if row is None:
        raise ExportError(
            f"base architecture {arch!r} is not supported for LoRA export "
            f"(supported: {architectures.supported_families()})"
        )
    head_keys = (gguf.Keys.Attention.HEAD_COUNT.format(arch=arch),
                 gguf.Keys.Attention.HEAD_COUNT_KV.format(arch=arch))
    if any(key in header.array_lengths for key in head_keys):
        raise ExportError(f"base GGUF {path} has per-layer head counts, which are not supported")
    n_layer = values.get(gguf.Keys.LLM.BLOCK_COUNT.format(arch=arch))
    n_head = values.get(head_keys[0])
    if not n_layer or not n_head:
        raise ExportError(f"base GGUF {path} lacks block_count or head_count metadata")
    n_head_kv = values.get(head_keys[1]) or n_head
    model_arch = next(k for k, v in gguf.MODEL_ARCH_NAMES.items() if v == arch)
    name = values.get(gguf.Keys.General.NAME)
    return _Base(
        arch=str(arch),
        rope_permuted=dict(row.rope_permuted),
        name=None if name is None else str(name),
        head_counts={"n_head": int(n_head), "n_head_kv": int(n_head_kv)},
        tensor_shapes={name: tensor.shape for name, tensor in header.tensors.items()},
        name_map=gguf.get_tensor_name_map(model_arch, int(n_layer)),
    )


# safetensors dtype -> numpy dtype; BF16 has none and is widened by hand below.
_ST_DTYPES = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "BF16": np.uint16}


def _read_safetensors(path: Path) -> dict[str, np.ndarray]:
    """Load every tensor of a safetensors file as float32 numpy arrays.

    Parsed by hand (8-byte header length, JSON header, raw little-endian data) because numpy has
    no bfloat16 and the ``safetensors`` numpy loader refuses it; this keeps torch out.
    """
    try:
        raw = path.read_bytes()
        header_len = int.from_bytes(raw[:8], "little")
        header: dict[str, Any] = json.loads(raw[8 : 8 + header_len])
    except (OSError, ValueError) as exc:
        raise ExportError(f"cannot read adapter weights {path}: {exc}") from exc
    header.pop("__metadata__", None)
    data = memoryview(raw)[8 + header_len :]
    out: dict[str, np.ndarray] = {}
    for key, info in header.items():
        dtype = _ST_DTYPES.get(info["dtype"])
        if dtype is None:
            raise ExportError(f"tensor {key} has unsupported dtype {info['dtype']}")
        start, end = info["data_offsets"]
        arr = np.frombuffer(data[start:end], dtype=np.dtype(dtype).newbyteorder("<"))
        if info["dtype"] == "BF16":  # bfloat16 is the top half of a float32
            arr = (arr.astype(np.uint32) << 16).view(np.float32)
        out[key] = arr.astype(np.float32).reshape(info["shape"])
    return out


def _pair_tensors(
    weights: dict[str, np.ndarray],
) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], dict[str, tuple[int, ...]]]:
    """Group PEFT tensors into {HF module path: (A, B)}.

    Also returns {module: shape} of the frozen base weights PEFT saves beside embedding-like
    LoRAs (``*.base_layer.weight``, e.g. lm_head): they are not part of the update, so they are
    only checked, as llama.cpp's converter skips them too. Anything else is an ExportError.
    """
    parts: dict[str, dict[str, np.ndarray]] = {}
    base_copies: dict[str, tuple[int, ...]] = {}
    for key, value in weights.items():
        if key.startswith(_PEFT_PREFIX) and key.endswith(_BASE_COPY_SUFFIX):
            base_copies[key[len(_PEFT_PREFIX) : -len(_BASE_COPY_SUFFIX)]] = value.shape
            continue
        suffix = next((s for s in _LORA_SUFFIXES if key.endswith(s)), None)
        if suffix is None or not key.startswith(_PEFT_PREFIX):
            raise ExportError(
                f"cannot export tensor {key!r}: only lora_A/lora_B weights of Linear layers fit "
                "a llama.cpp LoRA GGUF (embedding LoRA, DoRA magnitudes and trained full "
                "modules do not)"
            )
        module = key[len(_PEFT_PREFIX) : -len(suffix)]
        parts.setdefault(module, {})[_LORA_SUFFIXES[suffix]] = value
    if not parts:
        raise ExportError("the adapter holds no LoRA tensors")
    pairs = {}
    for module, ab in parts.items():
        if set(ab) != {"lora_a", "lora_b"}:
            raise ExportError(f"module {module} has only {', '.join(ab)}")
        pairs[module] = (ab["lora_a"], ab["lora_b"])
    return pairs, base_copies


def _gguf_name(module: str, base: _Base) -> str:
    """GGUF name of the base weight a PEFT module adapts (``blk.N.attn_q.weight``)."""
    gguf_name = base.name_map.get_name(f"{module}.weight", try_suffixes=(".weight",))
    if gguf_name is None:
        raise ExportError(f"module {module} has no {base.arch} GGUF tensor name")
    if gguf_name not in base.tensor_shapes:
        # e.g. lm_head on a model with tied embeddings: llama.cpp would reject the adapter
        raise ExportError(f"module {module} adapts {gguf_name}, which the base GGUF lacks")
    return gguf_name


def _check_shapes(module: str, gguf_name: str, a: np.ndarray, b: np.ndarray, base: _Base) -> None:
    """Ensure A (r, in) and B (out, r) fit the base tensor, whose ggml shape is (in, out)."""
    n_in, n_out = base.tensor_shapes[gguf_name][:2]
    if a.ndim != 2 or b.ndim != 2 or a.shape[0] != b.shape[1] or a.shape[0] == 0:
        raise ExportError(f"module {module}: lora_A {a.shape} and lora_B {b.shape} do not pair")
    if a.shape[1] != n_in or b.shape[0] != n_out:
        raise ExportError(
            f"module {module}: adapter maps {a.shape[1]} -> {b.shape[0]} features but base "
            f"{gguf_name} maps {n_in} -> {n_out}; was it trained on another base model?"
        )


def _fold_factor(config: dict[str, Any], module: str, rank: int) -> float:
    """PEFT's scaling of this module's B @ A divided by llama.cpp's (``lora_alpha / rank``).

    Mirrors peft.tuners.lora: ``alpha / r``, or ``alpha / sqrt(r)`` with rslora, where alpha
    comes from the first ``alpha_pattern`` key k matching the module path as ``(.*\\.)?(k)$``.
    Exactly 1.0 for a plain adapter, so its B is written bit for bit.
    """
    module_alpha = float(config["lora_alpha"])  # positive: checked by _read_config
    for key, value in (config.get("alpha_pattern") or {}).items():
        if re.match(rf"(.*\.)?({key})$", module):
            module_alpha = float(value)
            break
    factor = module_alpha / float(config["lora_alpha"])
    return factor * math.sqrt(rank) if config.get("use_rslora") else factor


def _to_gguf_row_order(module: str, b: np.ndarray, base: _Base) -> np.ndarray:
    """Reorder B's rows the way convert_hf_to_gguf.py reorders this projection's weight rows.

    Only the llama family's q/k are reordered (tunegate.domain.architectures says why): llama.cpp
    turns Hugging Face's "rotate half" rows into interleaved pairs there, and B produces the rows
    of the update B·A, so it must be reordered the same way (A acts on the untouched input side).
    """
    head_key = base.rope_permuted.get(module.rsplit(".", 1)[-1])
    return b if head_key is None else _rope_permute(b, base.head_counts[head_key])


def _rope_permute(rows: np.ndarray, n_head: int) -> np.ndarray:
    """HF "rotate half" row order -> GGUF interleaved order (LlamaModel.permute in llama.cpp).

    Within each head, HF keeps the first halves of the rotary pairs in the first half of the rows
    and the second halves after them; ggml wants the pair members next to each other.
    """
    n_rows = rows.shape[0]
    if n_rows % (2 * n_head):
        raise ExportError(f"{n_rows} rows cannot be split into {n_head} rotary heads")
    grouped = rows.reshape(n_head, 2, n_rows // n_head // 2, *rows.shape[1:])
    return np.ascontiguousarray(grouped.swapaxes(1, 2).reshape(rows.shape))


def _write_atomically(
    out_path: Path, base: _Base, alpha: float, name: str, tensors: list[tuple[str, np.ndarray]]
) -> None:
    """Write the adapter GGUF to a temp file beside ``out_path``, fsync it, then rename."""
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{out_path.name}.", suffix=".tmp", dir=out_path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        writer = gguf.GGUFWriter(tmp, base.arch)  # also writes general.architecture
        writer.add_type(gguf.GGUFType.ADAPTER)
        writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
        writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, alpha)
        writer.add_name(name)
        if base.name:
            writer.add_base_model_count(1)
            writer.add_base_model_name(0, base.name)
        for tensor_name, data in tensors:
            writer.add_tensor(tensor_name, np.ascontiguousarray(data, dtype=np.float32))
        try:
            writer.write_header_to_file()
            writer.write_kv_data_to_file()
            writer.write_tensors_to_file()
        finally:
            writer.close()  # also on failure: never leak the open temp file
        with tmp.open("rb+") as f:
            os.fsync(f.fileno())
        tmp.chmod(0o644)  # mkstemp makes it owner-only; a llama-server user must read it
        os.replace(tmp, out_path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _natural_key(module: str) -> list[int | str]:
    """Sort key that puts layers.2 before layers.10, for a stable, readable tensor order."""
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", module)]
