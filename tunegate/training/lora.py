"""LoRA on every linear projection of attention and MLP, never on embeddings or ``lm_head``.

Defaults, and why:

- ``r = 16``, ``alpha = 32`` (scale 2): the common LoRA setting; at r=16 on all seven
  projections SmolLM2-135M trains 4.9 M parameters (3.6 % of the model).
- ``dropout = 0``: LoRA dropout copies each projection's input once more per step (~12 % slower
  on CPU, see bench/README.md), and the runs here are short (a few epochs over small files)
  where it bought nothing measurable; without it training consumes no random numbers, which
  also keeps resume-after-pause bit-exact.
- Targets ``q,k,v,o,gate,up,down_proj`` (llama naming). Embeddings and ``lm_head`` are left
  alone so the adapter converts to a llama.cpp LoRA GGUF. A model without those names gets
  PEFT's ``"all-linear"`` (which also excludes the output layer).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from peft import PeftModel
    from transformers import PreTrainedModel

RANK = 16
ALPHA = 32
DROPOUT = 0.0
TARGET_MODULES = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


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
        names = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
        targets: list[str] | str = ([t for t in TARGET_MODULES if t in names]
                                    if set(TARGET_MODULES) & names else "all-linear")
        config = LoraConfig(r=RANK, lora_alpha=ALPHA, lora_dropout=DROPOUT,
                            target_modules=targets, bias="none", task_type="CAUSAL_LM")
        return get_peft_model(model, config)


def trainable_parameters(model: PeftModel) -> dict[str, object]:
    """The adapter's parameters by name (what the optimizer updates and resume restores)."""
    return {name: p for name, p in model.named_parameters() if p.requires_grad}
