"""How much memory a LoRA run needs, and whether it fits, before anything loads (torch-free).

The trainer's peak is, in order of size for a 1B base:

- the frozen base weights in the dtype they load in (:mod:`tunegate.training.precision`);
- the activations autograd keeps for one micro-batch of ``token_budget`` tokens
  (tunegate.training.trainer): per decoder layer and token about ``22 * hidden + 8 *
  intermediate + 8 * kv_width`` bytes in bfloat16 (the normed inputs kept in float32 by
  RMSNorm, q/k/v and their rotated copies, the attention output, the MLP's gate, up, activation
  and product). With gradient checkpointing only each layer's input stays, plus about three
  layers' activations while one is recomputed and its gradients flow;
- the loss's chunk of logits (tunegate.training.loss: about ``CHUNK_ELEMENTS`` float32
  logits, its softmax and gradient);
- the LoRA weights, their gradients and AdamW's two moments, all float32 (16 bytes each);
- the process itself: Python, torch and transformers, measured at ~0.7 GB on CPU.

The first job on a GGUF base converts it first (tunegate.training.gguf_convert): one tensor
at a time, dequantized to float32, cast to the copy's dtype and written to a shard of the
copy on disk, its file pages dropped. So the conversion holds one shard and the largest tensor
(the embedding) in float32 and in the copy's dtype, never the copy or the file whole; that
job's peak is the larger of the conversion's and training's. (transformers' own loading held
the mapped GGUF and the whole copy at once: a Llama-3.2-3B shape peaked at 12.8 GiB there.)

The coefficients were calibrated against measured peaks (bench/base_sizes.py, bench/README.md);
the estimate aims within 20 % of the measured peak. ``ModelShape`` comes from a GGUF's header
or a ``config.json`` without loading a tensor.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunegate.domain.architectures import read_gguf_header
from tunegate.training.gguf_convert import SHARD_BYTES

DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
LORA_RANK = 16  # tunegate.training.lora.RANK (that module imports torch)
LOSS_CHUNK_ELEMENTS = 512 * 49_152  # tunegate.training.loss.CHUNK_ELEMENTS
RUNTIME_BYTES = 700 * 2**20  # Python + torch + transformers + peft, before any model
# Bytes per token and decoder layer kept for backward, per unit of width (see the docstring).
HIDDEN_FACTOR, INTERMEDIATE_FACTOR, KV_FACTOR = 22, 8, 8
# FLOPs per parameter and trained token of a LoRA step: forward 2, backward to the activations 2
# (the frozen weights get no gradient).
FLOPS_PER_PARAM_TOKEN = 4
RECOMPUTED_LAYERS = 3


@dataclass(frozen=True)
class ModelShape:
    """The sizes of a decoder-only transformer that decide its memory."""

    n_params: int
    hidden: int
    n_layers: int
    intermediate: int
    vocab: int
    n_heads: int
    n_kv_heads: int

    @property
    def kv_width(self) -> int:
        return self.hidden // self.n_heads * self.n_kv_heads

    def lora_params(self, rank: int = LORA_RANK) -> int:
        """LoRA A and B of the seven projections of every layer."""
        h, f, kv = self.hidden, self.intermediate, self.kv_width
        per_layer = rank * ((h + h) * 2 + (h + kv) * 2 + (h + f) * 3)
        return per_layer * self.n_layers

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> ModelShape:
        """From a Hugging Face ``config.json`` (the text model's part for multimodal ones)."""
        config = config.get("text_config", config)
        h, layers = int(config["hidden_size"]), int(config["num_hidden_layers"])
        f, vocab = int(config["intermediate_size"]), int(config["vocab_size"])
        heads = int(config["num_attention_heads"])
        kv_heads = int(config.get("num_key_value_heads") or heads)
        head_dim = int(config.get("head_dim") or h // heads)
        attention = h * head_dim * heads * 2 + h * head_dim * kv_heads * 2
        per_layer = attention + 3 * h * f + 2 * h
        tied = bool(config.get("tie_word_embeddings", False))
        n_params = layers * per_layer + vocab * h * (1 if tied else 2) + h
        return cls(n_params, h, layers, f, vocab, heads, kv_heads)

    @classmethod
    def of_folder(cls, folder: Path) -> ModelShape:
        return cls.from_config(json.loads((folder / "config.json").read_text()))

    @classmethod
    def of_gguf(cls, path: Path) -> ModelShape:
        """From a GGUF's metadata and tensor table (no tensor is read). Raises KeyError for a
        missing key, UnsupportedArchitecture for an unreadable header."""
        header = read_gguf_header(path)
        arch = header.values["general.architecture"]

        def number(key: str) -> int:
            return int(header.values[f"{arch}.{key}"])

        heads = number("attention.head_count")
        kv_heads = int(header.values.get(f"{arch}.attention.head_count_kv", heads))
        vocab = header.array_lengths.get("tokenizer.ggml.tokens") or number("vocab_size")
        return cls(header.n_weights, number("embedding_length"), number("block_count"),
                   number("feed_forward_length"), vocab, heads, kv_heads)


@dataclass(frozen=True)
class MemoryEstimate:
    """The peak of one run, in bytes, by part."""

    weights: int
    activations: int
    loss: int
    lora: int
    runtime: int
    checkpointing: bool
    # Held besides the copy while a GGUF is converted (first job only): its mapped file and the
    # largest tensor in float32.
    conversion: int = 0

    @property
    def training(self) -> int:
        return self.weights + self.activations + self.loss + self.lora + self.runtime

    @property
    def total(self) -> int:
        return max(self.training, self.runtime + self.conversion)

    def describe(self) -> str:
        text = (f"{gib(self.total)} (base weights {gib(self.weights)}, activations "
                f"{gib(self.activations)}{' with gradient checkpointing' if self.checkpointing else ''}"
                f", loss {gib(self.loss)}, LoRA and optimizer {gib(self.lora)}, runtime "
                f"{gib(self.runtime)}")
        if self.conversion:
            text += f"; converting the GGUF first: {gib(self.runtime + self.conversion)}"
        return text + ")"


def gib(n_bytes: int) -> str:
    return f"{n_bytes / 2**30:.1f} GiB"


def estimate_memory(shape: ModelShape, dtype: str, token_budget: int, *,
                    checkpointing: bool = False, converting: bool = False) -> MemoryEstimate:
    """The trainer's peak memory for ``shape`` loaded in ``dtype`` (pure); ``converting``: the
    run converts a GGUF base first."""
    width = DTYPE_BYTES[dtype]
    h, f = shape.hidden, shape.intermediate
    # The factors count bfloat16 bytes (half of the float32 ones); float32 runs keep twice as much.
    per_layer = (HIDDEN_FACTOR * h + INTERMEDIATE_FACTOR * f + KV_FACTOR * shape.kv_width) \
        * width // 2 * token_budget
    if checkpointing:
        # Each layer's input, plus the layer being recomputed with its gradients in flight:
        # measured at about three layers' activations (1B shape: 4.10 GiB peak).
        activations = shape.n_layers * token_budget * h * width + RECOMPUTED_LAYERS * per_layer
    else:
        activations = shape.n_layers * per_layer
    # A chunk of float32 logits, its softmax and gradient, and the gathered hidden rows' gradient.
    rows = min(max(32, LOSS_CHUNK_ELEMENTS // max(1, shape.vocab)), token_budget)
    loss = rows * shape.vocab * 4 * 3 + token_budget * h * width
    return MemoryEstimate(weights=shape.n_params * width, activations=activations, loss=loss,
                          lora=shape.lora_params() * 16, runtime=RUNTIME_BYTES,
                          checkpointing=checkpointing,
                          conversion=conversion_bytes(shape, dtype) if converting else 0)


def conversion_bytes(shape: ModelShape, dtype: str) -> int:
    """What converting a GGUF into ``dtype`` holds: a shard of the copy, closed by the largest
    tensor in ``dtype``, and that tensor dequantized to float32 just before."""
    largest = max(shape.vocab, shape.intermediate) * shape.hidden
    return SHARD_BYTES + largest * (4 + DTYPE_BYTES[dtype])


@dataclass(frozen=True)
class Plan:
    """What a run will do: its memory estimate, and whether it fits ``limit`` at all."""

    estimate: MemoryEstimate
    limit: int

    @property
    def fits(self) -> bool:
        return self.estimate.total <= self.limit


def plan(shape: ModelShape, dtype: str, token_budget: int, limit: int, *,
         checkpointing: bool | None = None, converting: bool = False) -> Plan:
    """The run's plan under ``limit`` bytes: without gradient checkpointing when that fits (it
    costs a recomputed forward pass), with it when only that fits; ``checkpointing`` forces
    the choice (a setting). The plan may not fit: then the job must not start."""
    if checkpointing is not None:
        return Plan(estimate_memory(shape, dtype, token_budget, checkpointing=checkpointing,
                                    converting=converting), limit)
    without = estimate_memory(shape, dtype, token_budget, converting=converting)
    if without.total <= limit:
        return Plan(without, limit)
    return Plan(estimate_memory(shape, dtype, token_budget, checkpointing=True,
                                converting=converting), limit)


def refusal(planned: Plan, base_name: str) -> str:
    """The message of a job that cannot fit: the estimate, the limit, and what would."""
    estimate = planned.estimate
    room = planned.limit - estimate.runtime - estimate.lora - estimate.loss - estimate.activations
    hints = []
    if not estimate.checkpointing:
        hints.append("gradient checkpointing (TUNEGATE_GRADIENT_CHECKPOINTING=on)")
    if room > 0:
        hints.append(f"a base model of at most ~{room / 2 / 1e9:.1f}B parameters in bfloat16")
    else:
        hints.append("a smaller base model")
    hints.append("more memory for the trainer (TUNEGATE_TRAINER_MEMORY_LIMIT, or fewer "
                 "processes beside it)")
    return (f"Training {base_name} needs about {estimate.describe()}, more than the "
            f"{gib(planned.limit)} the trainer may use. What would fit: {'; or '.join(hints)}.")


def estimate_seconds(shape: ModelShape, tokens: int, flops_per_second: float) -> float:
    """How long training ``tokens`` tokens takes at ``flops_per_second`` (measured)."""
    return tokens * FLOPS_PER_PARAM_TOKEN * shape.n_params / flops_per_second


def available_memory(meminfo: str = "/proc/meminfo") -> int | None:
    """MemAvailable of the machine (the most a new process may take), or None if unknown."""
    try:
        with open(meminfo) as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None
