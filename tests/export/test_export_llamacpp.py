"""The exported adapter, run by llama.cpp on the real embedded SmolLM2, does what PEFT trained.

Proof: llama.cpp(float32 base + our adapter GGUF) gives the same logits as llama.cpp(float32
base with PEFT's delta merged into the weights). The merged side is built without
tunegate.adapters.export: PEFT's ``get_delta_weight`` put into GGUF row order with transformers' loader.
Both sides use the same float32 copy of the shipped Q4_1 base, so quantization plays no part.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

import tunegate.adapters.export
from tunegate.adapters.export import export_lora_gguf

from .helpers import THIRD_PARTY_WARNINGS, RealAdapter, llama, logits

llama_cpp = pytest.importorskip("llama_cpp")

pytestmark = [pytest.mark.slow] + [pytest.mark.filterwarnings(w) for w in THIRD_PARTY_WARNINGS]

# Measured on 2 CPU cores (AVX2, llama-cpp-python 0.3.36): max |Δlogit| adapter vs merged =
# 4.3e-5 with a float32 KV cache. Logits span about ±30; the adapter moves them by up to 1.9 and
# the same adapter without the q/k row permutation misses the merged model by 0.9, so 5e-4
# (~12x the measured noise) separates "equal" from every failure we know. The KV cache is
# float32 because with llama.cpp's default f16 cache the tiny float32 differences between the
# two paths flip f16 roundings, which gave Δ ≈ 1e-2 on both correct and subtly wrong exports.
TOLERANCE = 5e-4
PROMPT = b"<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n"


@pytest.fixture(scope="module")
def tokens(smol_q4_gguf: Path) -> list[int]:
    with llama(smol_q4_gguf) as llm:
        return llm.tokenize(PROMPT, add_bos=False, special=True)


@pytest.fixture(scope="module")
def base_logits(smol_f32_gguf: Path, tokens: list[int]) -> np.ndarray:
    return logits(smol_f32_gguf, tokens)


@pytest.fixture(scope="module")
def merged_logits(smol_merged_f32_gguf: Path, tokens: list[int]) -> np.ndarray:
    return logits(smol_merged_f32_gguf, tokens)


def test_transformers_rows_are_the_gguf_rows(smol_hf_model: Any, smol_f32_gguf: Path) -> None:
    """The reference's row mapping (transformers' GGUF loader) really maps the HF weights PEFT
    trained on to the tensors in this GGUF, q and k of every layer included."""
    import gguf

    from .helpers import gguf_rows_from_hf, hf_module_to_gguf_name

    cfg = smol_hf_model.config
    gguf_tensors = {t.name: t for t in gguf.GGUFReader(smol_f32_gguf).tensors}
    for i, layer in enumerate(smol_hf_model.model.layers):
        for proj in ("q_proj", "k_proj", "v_proj"):
            name = hf_module_to_gguf_name(f"model.layers.{i}.self_attn.{proj}", cfg.num_hidden_layers)
            hf = getattr(layer.self_attn, proj).weight.detach().numpy()
            ours = gguf_rows_from_hf(hf, name, cfg.num_attention_heads, cfg.num_key_value_heads)
            np.testing.assert_array_equal(ours, gguf_tensors[name].data, err_msg=name)


def test_adapter_logits_equal_merged_logits(
    smol_f32_gguf: Path,
    smol_adapters: dict[str, RealAdapter],
    tokens: list[int],
    base_logits: np.ndarray,
    merged_logits: np.ndarray,
) -> None:
    with_adapter = logits(smol_f32_gguf, tokens, lora=smol_adapters["all_linear"].gguf)

    diff = np.abs(with_adapter - merged_logits).max()
    effect = np.abs(with_adapter - base_logits).max()
    print(f"max |Δlogit| adapter vs merged: {diff:.3g}; adapter vs bare base: {effect:.3g}")
    assert diff < TOLERANCE
    # the adapter must matter, or the comparison above proves nothing
    assert effect > 1000 * TOLERANCE


def test_without_row_permutation_logits_differ(
    smol_f32_gguf: Path,
    smol_adapters: dict[str, RealAdapter],
    smol_q4_gguf: Path,
    tokens: list[int],
    merged_logits: np.ndarray,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The logits proof sees a missing q/k permutation (the classic conversion bug)."""
    monkeypatch.setattr(tunegate.adapters.export, "_rope_permute", lambda rows, n_head: rows)
    unpermuted = export_lora_gguf(
        smol_adapters["all_linear"].dir, smol_q4_gguf, tmp_path / "unpermuted.gguf"
    )
    diff = np.abs(logits(smol_f32_gguf, tokens, unpermuted) - merged_logits).max()
    print(f"max |Δlogit| unpermuted adapter vs merged: {diff:.3g}")
    assert diff > 100 * TOLERANCE


@pytest.fixture(scope="module")
def q4_last_logits(smol_q4_gguf: Path, tokens: list[int]) -> np.ndarray:
    return logits(smol_q4_gguf, tokens)[-1]


@pytest.mark.parametrize("shape", ["attention", "all_linear"])
def test_shipped_q4_base_loads_adapter_and_generates(
    smol_q4_gguf: Path,
    smol_adapters: dict[str, RealAdapter],
    tokens: list[int],
    q4_last_logits: np.ndarray,
    shape: str,
) -> None:
    """What the server does: the shipped Q4_1 base with our adapter (llama-cpp-python raises if
    llama.cpp rejects the file) is in effect and generates."""
    adapter = smol_adapters[shape].gguf
    tuned = logits(smol_q4_gguf, tokens, adapter)[-1]
    assert np.isfinite(tuned).all()
    print(
        f"{shape}: max |Δlogit| vs bare Q4_1 base at the last position: "
        f"{np.abs(tuned - q4_last_logits).max():.3g}"
    )
    assert np.abs(tuned - q4_last_logits).max() > 0.1

    with llama(smol_q4_gguf, adapter) as llm:  # the server's settings: default f16 KV cache
        out = llm.create_completion(PROMPT.decode(), max_tokens=4, temperature=0.0)
    assert out["usage"]["completion_tokens"] > 0
    assert out["choices"][0]["text"]
