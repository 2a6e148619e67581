"""The second architecture: a LoRA on Gemma 3 270M exported and run by llama.cpp does what PEFT
computes (the same proofs as SmolLM2's in test_export_llamacpp.py, plus one across frameworks).

1. llama.cpp(float32 base + our adapter GGUF) == llama.cpp(float32 base with PEFT's delta
   merged into the GGUF tensors, rows unchanged: gemma3 has no q/k permutation).
2. llama.cpp(float32 base + our adapter) == transformers(PEFT model) on the same tokens: this
   side goes through everything Gemma does differently from llama and a LoRA never touches:
   norms stored as ``1 + w`` in the GGUF and ``w`` in transformers, embeddings scaled by
   sqrt(hidden), the tied lm_head, ``query_pre_attn_scalar``, q/k norms, the local/global rope
   bases of sliding and full layers (the prompt is far shorter than the 512-token window, so
   the window itself plays no part).
3. What the server does: the shipped Q4_K_M base loads the adapter (``lora_path``) and generates.

The Gemma model comes from the optional ``gemma`` extra (skipped with the reason without it).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tunegate.adapters.export import export_lora_gguf

from .conftest import hf_model_from_folder, real_adapter
from .helpers import ALL_LINEAR, THIRD_PARTY_WARNINGS, RealAdapter, copy_gguf, llama, logits

pytest.importorskip("llama_cpp")

pytestmark = [pytest.mark.slow] + [pytest.mark.filterwarnings(w) for w in THIRD_PARTY_WARNINGS]

# Measured on 2 cores (Xeon, llama-cpp-python 0.3.36, float32 KV cache): max |Δlogit| adapter
# vs merged = 6.9e-3 (4e-4 at the BOS position, up to 9e-3 after it), logits spanning -25..22.
# That is float32 rounding, not the export: merging the adapter file's own A and B gives the
# same 9e-3. It is ~15x SmolLM2's 4.3e-5 because Gemma's residual stream is far larger
# (embeddings scaled by sqrt(640), no bound on the activations), so the same relative rounding
# of W x + B (A x) vs (W + BA) x is larger in absolute terms. The adapter moves the logits by
# 7.5, and the same adapter with q/k rows wrongly permuted misses by far more (tested below);
# 2.5e-2 (~3x the measured noise) separates those.
TOLERANCE = 2.5e-2
# transformers(PEFT) vs llama.cpp(adapter): two float32 implementations with different
# operation orders; measured 1.6e-2. A norm read as w instead of 1 + w, a missing sqrt(hidden)
# or a wrong attention scale moves the logits by whole units. 5e-2 is ~3x the measured value.
CROSS_TOLERANCE = 5e-2
PROMPT = "The capital of France is"


@pytest.fixture(scope="module")
def gemma_q4_gguf(gemma_models_dir: Path) -> Path:
    return gemma_models_dir / "gemma-3-270m.gguf"


@pytest.fixture(scope="module")
def gemma_f32_gguf(gemma_q4_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_gguf(gemma_q4_gguf, tmp_path_factory.mktemp("gemma_f32") / "gemma-f32.gguf")


@pytest.fixture(scope="module")
def gemma_adapter(gemma_q4_gguf: Path, converted_gemma: Path,
                  tmp_path_factory: pytest.TempPathFactory) -> RealAdapter:
    """An all-linear r=8 random adapter on the dequantized base (the session's one conversion,
    tests/conftest.py), exported against the shipped Q4_K_M GGUF as the worker does."""
    base = hf_model_from_folder(converted_gemma)
    assert base.config.model_type == "gemma3_text"
    return real_adapter(base, gemma_q4_gguf, tmp_path_factory.mktemp("gemma_adapter"),
                        ALL_LINEAR, arch="gemma3", keep_model=True)


@pytest.fixture(scope="module")
def tokens(gemma_q4_gguf: Path) -> list[int]:
    with llama(gemma_q4_gguf) as llm:
        ids: list[int] = llm.tokenize(PROMPT.encode(), add_bos=True)
    assert ids[0] == 2  # <bos>: Gemma is lost without it
    return ids


@pytest.fixture(scope="module")
def merged_logits(gemma_f32_gguf: Path, gemma_adapter: RealAdapter, tokens: list[int],
                  tmp_path_factory: pytest.TempPathFactory) -> np.ndarray:
    """llama.cpp on the float32 base with PEFT's deltas added to its tensors."""
    deltas = gemma_adapter.deltas
    assert len(deltas) == 18 * len(ALL_LINEAR)
    merged = copy_gguf(gemma_f32_gguf, tmp_path_factory.mktemp("gemma_merged") / "merged.gguf",
                       lambda name, data: data + deltas[name] if name in deltas else data)
    try:
        return logits(merged, tokens)
    finally:
        merged.unlink()  # 1 GB


def test_adapter_logits_equal_merged_logits(gemma_f32_gguf: Path, gemma_adapter: RealAdapter,
                                            tokens: list[int], merged_logits: np.ndarray) -> None:
    with_adapter = logits(gemma_f32_gguf, tokens, lora=gemma_adapter.gguf)
    diff = np.abs(with_adapter - merged_logits).max()
    effect = np.abs(with_adapter - logits(gemma_f32_gguf, tokens)).max()
    print(f"gemma3: max |Δlogit| adapter vs merged: {diff:.3g}; vs bare base: {effect:.3g}")
    assert diff < TOLERANCE
    assert effect > 100 * TOLERANCE  # the adapter matters, or this proves nothing


def test_a_llama_style_row_permutation_would_be_seen(
        gemma_f32_gguf: Path, gemma_q4_gguf: Path, gemma_adapter: RealAdapter, tokens: list[int],
        merged_logits: np.ndarray, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Gemma's table row says "no q/k permutation"; were it llama's, the proof above fails."""
    import tunegate.adapters.export
    from tunegate.domain import architectures

    llama_row = architectures.by_gguf_arch("llama")
    assert llama_row is not None
    monkeypatch.setattr(tunegate.adapters.export.architectures, "by_gguf_arch",
                        lambda name: replace(llama_row, gguf_arch=name))
    wrong = export_lora_gguf(gemma_adapter.dir, gemma_q4_gguf, tmp_path / "permuted.gguf")
    diff = np.abs(logits(gemma_f32_gguf, tokens, wrong) - merged_logits).max()
    print(f"gemma3: max |Δlogit| wrongly permuted adapter vs merged: {diff:.3g}")
    assert diff > 10 * TOLERANCE


def test_llama_cpp_with_adapter_equals_transformers_with_peft(
        gemma_f32_gguf: Path, gemma_adapter: RealAdapter, tokens: list[int]) -> None:
    import torch

    served = logits(gemma_f32_gguf, tokens, lora=gemma_adapter.gguf)
    with torch.no_grad():
        trained: Any = gemma_adapter.model(torch.tensor([tokens])).logits[0].double().numpy()
    diff = np.abs(served - trained).max()
    print(f"gemma3: max |Δlogit| llama.cpp+adapter vs transformers+PEFT: {diff:.3g} "
          f"(logits span {served.min():.1f}..{served.max():.1f})")
    assert diff < CROSS_TOLERANCE
    assert int(served[-1].argmax()) == int(trained[-1].argmax())


def test_shipped_q4_base_loads_adapter_and_generates(gemma_q4_gguf: Path,
                                                     gemma_adapter: RealAdapter,
                                                     tokens: list[int]) -> None:
    tuned = logits(gemma_q4_gguf, tokens, gemma_adapter.gguf)[-1]
    bare = logits(gemma_q4_gguf, tokens)[-1]
    assert np.isfinite(tuned).all() and np.abs(tuned - bare).max() > 0.1
    with llama(gemma_q4_gguf, gemma_adapter.gguf) as llm:  # the server's default f16 KV cache
        out = llm.create_completion(PROMPT, max_tokens=4, temperature=0.0)
    assert out["usage"]["completion_tokens"] > 0 and out["choices"][0]["text"]
