"""Which number format training computes in: bfloat16 where the hardware does it fast, else float32.

On a CPU with AMX or AVX-512-BF16 (``amx_bf16`` / ``avx512_bf16`` in ``/proc/cpuinfo``), the
base model's frozen weights are loaded in bfloat16 and the forward pass runs under CPU
``autocast(bfloat16)``: measured on an Intel Xeon (AMX, SmolLM2-135M, LoRA r16 on all seven
projections, GSM8K) 1.4-1.6x the float32 tokens/s at one thread, half the weights' memory, and
a base-model held-out loss within 0.001 of float32's (bench/README.md). Elsewhere bfloat16
matmuls are emulated and slower than float32, so float32 stays.

What stays float32 in a bfloat16 run: the LoRA weights (peft upcasts adapter weights it creates
or loads; ``autocast_adapter_dtype``), their gradients and the AdamW state (which follow the
weights), the log-softmax, the losses and their sums (:mod:`tunegate.training.loss`). The
logits come out of the (bfloat16) output projection rounded to bfloat16 and are softmaxed in
float32: on GSM8K the trained adapter's held-out loss was 0.005 above float32's where two
float32 training seeds differ by 0.018 (bench/README.md). The converted base in the model
cache is a copy in ``base_dtype`` (tunegate.training.model_cache), never float32 besides.

On CUDA nothing changes: float32 weights with bfloat16 autocast where the GPU supports it.

``TUNEGATE_TRAIN_DTYPE`` = ``auto`` (the above), ``bf16`` or ``fp32`` overrides the choice
(``fp32`` on CUDA also switches its autocast off). Torch-free: the caller maps the names.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from tunegate.settings import TRAIN_DTYPE_ENV, parse_train_dtype

# /proc/cpuinfo flags of x86 CPUs with native bfloat16 matrix or dot-product instructions.
BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")


@dataclass(frozen=True)
class Precision:
    """The number formats of one run."""

    base_dtype: str  # "float32" or "bfloat16": the frozen base weights as loaded
    autocast: bool  # bfloat16 autocast around the forward pass
    reason: str  # why, for the job's events

    def describe(self) -> str:
        """One phrase for the job's events."""
        if self.base_dtype == "bfloat16":
            return (f"bfloat16 base weights and autocast, LoRA weights and optimizer in "
                    f"float32 ({self.reason})")
        if self.autocast:
            return f"float32 weights with bfloat16 autocast ({self.reason})"
        return f"float32 ({self.reason})"


def choose_precision(device_type: str, setting: str, cpu_flags: Iterable[str],
                     cuda_bf16: bool = False) -> Precision:
    """The precision of a run on ``device_type`` ("cpu" or "cuda") (pure).

    ``setting`` is ``auto``, ``bf16`` or ``fp32``; ``cpu_flags`` the CPU's feature flags;
    ``cuda_bf16`` whether the GPU supports bfloat16.
    """
    if device_type == "cuda":
        if setting == "fp32":
            return Precision("float32", False, f"{TRAIN_DTYPE_ENV}=fp32")
        return Precision("float32", cuda_bf16,
                         "the GPU supports bfloat16" if cuda_bf16 else "no bfloat16 on this GPU")
    if setting == "fp32":
        return Precision("float32", False, f"{TRAIN_DTYPE_ENV}=fp32")
    if setting == "bf16":
        return Precision("bfloat16", True, f"{TRAIN_DTYPE_ENV}=bf16")
    native = [flag for flag in BF16_CPU_FLAGS if flag in set(cpu_flags)]
    if native:
        return Precision("bfloat16", True, f"the CPU has {native[0]}")
    return Precision("float32", False, "the CPU has no native bfloat16")


def cpu_base_dtype(env: Mapping[str, str] = os.environ, cpuinfo: str = "/proc/cpuinfo") -> str:
    """The dtype a CPU run on this machine loads the base in (what its model cache holds).
    Raises ValueError on a bad ``TUNEGATE_TRAIN_DTYPE``."""
    return choose_precision("cpu", configured_setting(env), cpu_flags(cpuinfo)).base_dtype


def configured_setting(env: Mapping[str, str] = os.environ) -> str:
    """``TUNEGATE_TRAIN_DTYPE`` (``auto`` when unset). Raises ValueError on another value."""
    return parse_train_dtype(env.get(TRAIN_DTYPE_ENV, "auto"))


def cpu_flags(cpuinfo: str = "/proc/cpuinfo") -> frozenset[str]:
    """The feature flags of the first CPU listed (empty when the file cannot be read)."""
    try:
        with open(cpuinfo) as handle:
            for line in handle:
                name, _, value = line.partition(":")
                if name.strip() in ("flags", "Features"):
                    return frozenset(value.split())
    except OSError:
        pass
    return frozenset()
