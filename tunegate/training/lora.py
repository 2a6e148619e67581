"""LoRA on every linear projection of attention and MLP, never on embeddings or ``lm_head``.

Defaults, and why:

- ``r = 16``, ``alpha = 32`` (scale 2): the common LoRA setting; at r=16 on all seven
  projections SmolLM2-135M trains 4.9 M parameters (3.6 % of the model).
- ``dropout = 0``: LoRA dropout copies each projection's input once more per step (~12 % slower
  on CPU, see bench/README.md), and the runs here are short (a few epochs over small files)
  where it bought nothing measurable; without it training consumes no random numbers, which
  also keeps resume-after-pause bit-exact.
- Targets: every attention and MLP projection, named per family by
  :mod:`tunegate.domain.architectures` (``q,k,v,o,gate,up,down_proj``; Phi-3's fused
  ``qkv_proj``, ``gate_up_proj``). Embeddings and ``lm_head`` are left alone so the adapter
  converts to a llama.cpp LoRA GGUF. A model whose ``model_type`` is not in that table is
  refused (``TrainingFailed``, unsupported_base_model): it could not be exported or served.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from tunegate.domain import architectures
from tunegate.training.errors import UNSUPPORTED_BASE_MODEL, TrainingFailed

if TYPE_CHECKING:
    from peft import PeftModel
    from transformers import PreTrainedModel

RANK = 16
ALPHA = 32
DROPOUT = 0.0


def attach_lora(model: PreTrainedModel, init_adapter: str | Path | None = None) -> PeftModel:
    """Wrap ``model`` with a trainable LoRA adapter; only adapter weights require grad.

    With ``init_adapter`` (a PEFT folder of an earlier fine-tune) training continues from that
    adapter, keeping its rank and targets. Otherwise a fresh adapter is initialised from the
    torch RNG (seed it first for repeatable runs).
    """
    from peft import LoraConfig, PeftModel, get_peft_model

    with warnings.catch_warnings():
        # peft 0.21 still reads transformers' deprecated `is_gradient_checkpointing`.
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*is deprecated",
                                category=FutureWarning)
        if init_adapter is not None:
            return PeftModel.from_pretrained(model, str(init_adapter), is_trainable=True)
        config = LoraConfig(r=RANK, lora_alpha=ALPHA, lora_dropout=DROPOUT,
                            target_modules=target_modules(model), bias="none", task_type="CAUSAL_LM")
        return get_peft_model(model, config)


def target_modules(model: PreTrainedModel) -> list[str]:
    """The projections LoRA adapts on ``model``: its family's, those the model has."""
    model_type = str(getattr(model.config, "model_type", ""))
    arch = architectures.by_hf_model_type(model_type)
    if arch is None:
        raise TrainingFailed(UNSUPPORTED_BASE_MODEL, f"The base model's model_type is "
                             f"{model_type!r}, which tunegate cannot train, export and serve. "
                             f"Supported architectures: {architectures.supported_families()}.",
                             "model")
    names = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    targets = [t for t in arch.lora_targets if t in names]
    if not targets:
        raise TrainingFailed(UNSUPPORTED_BASE_MODEL, f"The base model ({model_type}) has none "
                             f"of the projections LoRA adapts ({', '.join(arch.lora_targets)}).",
                             "model")
    return targets


def trainable_parameters(model: PeftModel) -> dict[str, object]:
    """The adapter's parameters by name (what the optimizer updates and resume restores)."""
    return {name: p for name, p in model.named_parameters() if p.requires_grad}
