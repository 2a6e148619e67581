"""Reference helpers for the export tests, written independently of tunegate.adapters.export.

torch, transformers and peft are imported inside the functions that need them, so importing
this module costs nothing; the test modules skip themselves when the train extras are missing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gguf
import numpy as np

SEED = 1234

# Warnings the export tests trigger in third-party code, each named (pyproject: warnings = errors).
THIRD_PARTY_WARNINGS = [
    # peft 0.21 reads transformers 5's deprecated alias in PeftModel.__init__
    "ignore:`is_gradient_checkpointing` is deprecated:FutureWarning",
]
ALL_LINEAR = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
ATTENTION = ["q_proj", "k_proj", "v_proj", "o_proj"]

# Tiny llama with grouped-query attention (4 query heads, 2 KV heads, head_dim 16) so that the
# q and k row permutations differ from each other and from the identity.
TINY: dict[str, Any] = dict(
    vocab_size=128,
    hidden_size=64,
    intermediate_size=96,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    tie_word_embeddings=True,
)


@dataclass
class Adapter:
    """A saved PEFT adapter folder and the PeftModel it was saved from."""

    dir: Path
    model: Any


@dataclass
class RealAdapter:
    """A PEFT adapter on a real base, its GGUF export, and PEFT's deltas for a merged copy."""

    dir: Path
    gguf: Path
    deltas: dict[str, np.ndarray]  # GGUF tensor name -> PEFT's scaling * B @ A, in GGUF row order
    model: Any = None  # the PeftModel (base + adapter) the deltas came from


def hf_rows_from_gguf(rows: np.ndarray, gguf_name: str, n_head: int, n_head_kv: int,
                      arch: str = "llama") -> np.ndarray:
    """GGUF row order -> Hugging Face row order, using transformers' own GGUF loader code.

    transformers un-permutes attn_q/attn_k rows when it loads a llama GGUF (other tensors, and
    other architectures' projections, pass through unchanged), so it is an oracle for the
    layout that does not share our code.
    """
    from transformers.modeling_gguf_pytorch_utils import TENSOR_PROCESSORS, TensorProcessor

    processor = TENSOR_PROCESSORS.get(arch, TensorProcessor)(
        config={"num_attention_heads": n_head, "num_key_value_heads": n_head_kv}
    )
    return np.asarray(processor.process(rows, gguf_name).weights)


def gguf_rows_from_hf(rows: np.ndarray, gguf_name: str, n_head: int, n_head_kv: int,
                      arch: str = "llama") -> np.ndarray:
    """Inverse of :func:`hf_rows_from_gguf`, derived from it through an index vector."""
    index = np.arange(rows.shape[0])[:, None]
    idx = hf_rows_from_gguf(index, gguf_name, n_head, n_head_kv, arch)[:, 0]
    out = np.empty_like(rows)
    out[idx] = rows  # HF row i came from GGUF row idx[i]
    return out


def hf_module_to_gguf_name(module: str, n_layer: int, arch: str = "llama") -> str:
    """``model.layers.0.self_attn.q_proj`` -> ``blk.0.attn_q.weight``."""
    model_arch = next(k for k, v in gguf.MODEL_ARCH_NAMES.items() if v == arch)
    name = gguf.get_tensor_name_map(model_arch, n_layer).get_name(module)
    assert name is not None, module
    return f"{name}.weight"


def lora_modules(model: Any) -> dict[str, Any]:
    """{HF module path in the base model: LoRA layer} for every LoRA-wrapped module."""
    from peft.tuners.lora import LoraLayer

    prefix = "base_model.model."
    return {
        name[len(prefix) :]: module
        for name, module in model.named_modules()
        if isinstance(module, LoraLayer)
    }


def randomize_lora_b(model: Any, seed: int, std: float = 0.02) -> None:
    """PEFT initialises lora_B to zero (a no-op adapter); give it random values instead."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=gen) * std)


def copy_gguf(
    src: Path, dst: Path, transform: Callable[[str, np.ndarray], np.ndarray] | None = None
) -> Path:
    """Write ``dst``: all of ``src``'s metadata (tokenizer included), every tensor dequantized
    to float32, passed through ``transform(name, data)`` and stored as float32."""
    reader = gguf.GGUFReader(src)
    writer = gguf.GGUFWriter(dst, reader.get_field(gguf.Keys.General.ARCHITECTURE).contents())
    for field in reader.fields.values():
        if field.name == gguf.Keys.General.ARCHITECTURE or field.name.startswith("GGUF."):
            continue  # the writer adds these itself
        vtype = field.types[0]
        sub_type = field.types[-1] if vtype == gguf.GGUFValueType.ARRAY else None
        value = field.contents()
        if field.name == gguf.Keys.General.FILE_TYPE:
            value = int(gguf.LlamaFileType.ALL_F32)
        writer.add_key_value(field.name, value, vtype, sub_type=sub_type)
    for t in reader.tensors:
        data = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32)
        if transform is not None:
            data = transform(t.name, data)
        writer.add_tensor(t.name, np.ascontiguousarray(data, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return dst


def write_tiny_base(path: Path, arch: str = "llama", **overrides: Any) -> Path:
    """A base GGUF with the metadata and tensor shapes of the tiny llama (values are zeros)."""
    cfg = {**TINY, **overrides}
    n_layer, hidden, ffn = cfg["num_hidden_layers"], cfg["hidden_size"], cfg["intermediate_size"]
    kv_rows = hidden // cfg["num_attention_heads"] * cfg["num_key_value_heads"]
    writer = gguf.GGUFWriter(path, arch)
    writer.add_name("tiny")
    writer.add_block_count(n_layer)
    writer.add_embedding_length(hidden)
    writer.add_feed_forward_length(ffn)
    writer.add_head_count(cfg["num_attention_heads"])
    writer.add_head_count_kv(cfg["num_key_value_heads"])
    # numpy shape (out, in), as convert_hf_to_gguf writes them; tied embeddings: no output.weight
    shapes = {"token_embd.weight": (cfg["vocab_size"], hidden), "output_norm.weight": (hidden,)}
    for i in range(n_layer):
        shapes |= {
            f"blk.{i}.attn_q.weight": (hidden, hidden),
            f"blk.{i}.attn_k.weight": (kv_rows, hidden),
            f"blk.{i}.attn_v.weight": (kv_rows, hidden),
            f"blk.{i}.attn_output.weight": (hidden, hidden),
            f"blk.{i}.ffn_gate.weight": (ffn, hidden),
            f"blk.{i}.ffn_up.weight": (ffn, hidden),
            f"blk.{i}.ffn_down.weight": (hidden, ffn),
        }
    if not cfg["tie_word_embeddings"]:
        shapes["output.weight"] = (cfg["vocab_size"], hidden)
    for name, shape in shapes.items():
        writer.add_tensor(name, np.zeros(shape, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@contextmanager
def llama(model: Path, lora: Path | None = None, **kwargs: Any) -> Iterator[Any]:
    """``llama_cpp.Llama`` on ``model`` (with the LoRA GGUF ``lora``), closed afterwards."""
    import llama_cpp

    llm = llama_cpp.Llama(
        model_path=str(model),
        lora_path=str(lora) if lora else None,
        n_ctx=128,
        n_batch=128,
        n_threads=2,
        seed=0,
        verbose=False,
        **kwargs,
    )
    try:
        yield llm
    finally:
        llm.close()


def logits(model: Path, tokens: list[int], lora: Path | None = None) -> np.ndarray:
    """Logits at every position for ``tokens``, evaluated in one batch (float32 KV cache).

    llama-cpp-python fills ``scores`` only with ``logits_all=True``; without it they are
    uninitialised memory."""
    import llama_cpp

    f32 = llama_cpp.GGML_TYPE_F32
    with llama(model, lora, logits_all=True, type_k=f32, type_v=f32) as llm:
        llm.eval(tokens)
        return np.array(llm.scores[: len(tokens)], dtype=np.float64)
