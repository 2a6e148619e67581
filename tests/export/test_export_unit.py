"""export_lora_gguf on a tiny random llama: names, shapes, metadata, scaling, refusals, atomicity.

The oracle for "what llama.cpp will compute" is the GGUF LoRA rule ``(alpha / r) * B @ A`` per
tensor (r from the tensor's shape, alpha from the metadata), read back from the written file;
the oracle for the q/k row order is transformers' own GGUF loader (helpers.hf_rows_from_gguf).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import gguf
import numpy as np
import pytest

from tests import tiers
from tunegate.adapters.export import ExportError, export_lora_gguf

from .helpers import (
    ALL_LINEAR,
    ATTENTION,
    THIRD_PARTY_WARNINGS,
    TINY,
    Adapter,
    hf_module_to_gguf_name,
    hf_rows_from_gguf,
    lora_modules,
    write_tiny_base,
)

torch = tiers.lazy("torch")

pytestmark = [pytest.mark.filterwarnings(w) for w in THIRD_PARTY_WARNINGS]
N_HEAD, N_HEAD_KV, N_LAYER = (
    TINY["num_attention_heads"],
    TINY["num_key_value_heads"],
    TINY["num_hidden_layers"],
)


def read_adapter(path: Path) -> tuple[dict[str, object], dict[str, gguf.ReaderTensor]]:
    reader = gguf.GGUFReader(path)
    fields = {name: f.contents() for name, f in reader.fields.items()}
    return fields, {t.name: t for t in reader.tensors}


def llama_cpp_delta(tensors: dict[str, gguf.ReaderTensor], alpha: float, name: str) -> np.ndarray:
    """The update llama.cpp applies to base tensor ``name``: (alpha / rank) * B @ A."""
    a = np.asarray(tensors[f"{name}.lora_a"].data, dtype=np.float64)
    b = np.asarray(tensors[f"{name}.lora_b"].data, dtype=np.float64)
    rank = b.shape[1]  # ggml's b->ne[0]
    return alpha / rank * b @ a


def test_names_shapes_and_metadata(
    make_tiny_adapter: Callable[..., Adapter], tiny_base_gguf: Path
) -> None:
    adapter = make_tiny_adapter(r=4, lora_alpha=8, target_modules=ALL_LINEAR)
    out = export_lora_gguf(adapter.dir, tiny_base_gguf, adapter.dir.parent / "a.gguf")

    fields, tensors = read_adapter(out)
    assert fields["general.architecture"] == "llama"
    assert fields["general.type"] == "adapter"
    assert fields["adapter.type"] == "lora"
    assert fields["adapter.lora.alpha"] == 8.0
    assert gguf.GGUFReader(out).get_field("adapter.lora.alpha").types == [gguf.GGUFValueType.FLOAT32]
    assert fields["general.name"] == adapter.dir.name
    assert fields["general.base_model.0.name"] == "tiny"  # the base's general.name

    expected = {
        f"blk.{i}.{t}.weight.{ab}"
        for i in range(N_LAYER)
        for t in ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down")
        for ab in ("lora_a", "lora_b")
    }
    assert set(tensors) == expected
    base = {t.name: t for t in gguf.GGUFReader(tiny_base_gguf).tensors}
    for name, t in tensors.items():
        assert t.tensor_type == gguf.GGMLQuantizationType.F32
        n_in, n_out = base[name.rsplit(".", 1)[0]].shape  # ggml order: ne0 = input features
        # llama.cpp's loader checks exactly these: a (ne: in, r) and b (ne: r, out)
        assert list(t.shape) == ([n_in, 4] if name.endswith("lora_a") else [4, n_out]), name

    named = export_lora_gguf(adapter.dir, tiny_base_gguf, out, name="ft:tiny:org:demo:abc123")
    assert read_adapter(named)[0]["general.name"] == "ft:tiny:org:demo:abc123"


@pytest.mark.parametrize(
    "lora_kwargs",
    [
        pytest.param({}, id="plain"),
        pytest.param({"use_rslora": True, "lora_alpha": 6}, id="rslora"),
        pytest.param(
            {
                "rank_pattern": {"k_proj": 2, "down_proj": 6},
                # "proj" matches no module under PEFT's rule (a whole trailing name part),
                # though it is a substring of all of them
                "alpha_pattern": {"proj": 99, "q_proj": 3, r"layers\.1\.mlp\.up_proj": 20},
            },
            id="rank_and_alpha_pattern",
            # PEFT agrees that "proj" matches nothing, and says so
            marks=pytest.mark.filterwarnings(
                "ignore:The following alpha_pattern keys did not match:RuntimeWarning"
            ),
        ),
    ],
)
def test_update_equals_peft(
    make_tiny_adapter: Callable[..., Adapter], tiny_base_gguf: Path, lora_kwargs: dict[str, object]
) -> None:
    """For every module, what llama.cpp will add to W equals PEFT's own delta (its scaling,
    patterns and rslora included), once the q/k rows are put back in transformers' HF order."""
    adapter = make_tiny_adapter(**lora_kwargs)
    out = export_lora_gguf(adapter.dir, tiny_base_gguf, adapter.dir.parent / "a.gguf")
    fields, tensors = read_adapter(out)

    modules = lora_modules(adapter.model)
    assert len(modules) == N_LAYER * len(ALL_LINEAR)
    scalings = set()
    for module, layer in modules.items():
        name = hf_module_to_gguf_name(module, N_LAYER)
        # PEFT's scaling for this module and its weights, multiplied in float64
        a = layer.lora_A["default"].weight.detach().double().numpy()
        b = layer.lora_B["default"].weight.detach().double().numpy()
        peft_delta = layer.scaling["default"] * b @ a
        ours = hf_rows_from_gguf(
            llama_cpp_delta(tensors, fields["adapter.lora.alpha"], name), name, N_HEAD, N_HEAD_KV
        )
        # B is stored in float32 after folding: 1e-7 relative per element, cancellation aside
        atol = 1e-6 * np.abs(peft_delta).max()
        np.testing.assert_allclose(ours, peft_delta, rtol=1e-6, atol=atol, err_msg=module)
        scalings.add(layer.scaling["default"])
    if lora_kwargs:  # the case really exercises per-module scaling
        assert len(scalings) > 1 or lora_kwargs.get("use_rslora")


def test_plain_adapter_is_copied_bit_for_bit(
    make_tiny_adapter: Callable[..., Adapter], tiny_base_gguf: Path
) -> None:
    """A is never touched; B only gets its q/k rows reordered, and the reorder is not a no-op."""
    adapter = make_tiny_adapter()
    _, tensors = read_adapter(
        export_lora_gguf(adapter.dir, tiny_base_gguf, adapter.dir.parent / "a.gguf")
    )
    for module, layer in lora_modules(adapter.model).items():
        name = hf_module_to_gguf_name(module, N_LAYER)
        a = layer.lora_A["default"].weight.detach().numpy()
        b = layer.lora_B["default"].weight.detach().numpy()
        ours_b = np.asarray(tensors[f"{name}.lora_b"].data)
        np.testing.assert_array_equal(tensors[f"{name}.lora_a"].data, a)
        np.testing.assert_array_equal(hf_rows_from_gguf(ours_b, name, N_HEAD, N_HEAD_KV), b)
        if module.endswith(("q_proj", "k_proj")):
            assert not np.array_equal(ours_b, b), f"{module}: rows were not reordered"
        else:
            assert np.array_equal(ours_b, b)


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_half_precision_adapters(
    make_tiny_adapter: Callable[..., Adapter], tiny_base_gguf: Path, dtype: str
) -> None:
    """Adapters saved in bf16/fp16 (GPU training) are widened exactly to float32."""
    adapter = make_tiny_adapter(dtype=getattr(torch, dtype), target_modules=["v_proj"])
    _, tensors = read_adapter(
        export_lora_gguf(adapter.dir, tiny_base_gguf, adapter.dir.parent / "a.gguf")
    )
    layer = lora_modules(adapter.model)["model.layers.1.self_attn.v_proj"]
    expected = layer.lora_B["default"].weight.detach().float().numpy()
    np.testing.assert_array_equal(tensors["blk.1.attn_v.weight.lora_b"].data, expected)


# --- refusals -------------------------------------------------------------------------------


def _edit_config(adapter: Adapter, **changes: object) -> None:
    path = adapter.dir / "adapter_config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


def _refusal(
    lora_kwargs: dict[str, object],
    message: str,
    edit: Callable[[Adapter], None] | None = None,
    *,
    id: str,
    peft_warns: tuple[str, ...] = (),
) -> object:
    """One refusal case: build with ``lora_kwargs``, apply ``edit``, expect ``message``.
    ``peft_warns`` names the warnings PEFT itself gives while building that adapter."""
    marks = [pytest.mark.filterwarnings(f"ignore:{w}") for w in peft_warns]
    return pytest.param(lora_kwargs, message, edit, id=id, marks=marks)


@pytest.mark.parametrize(
    ("lora_kwargs", "message", "edit"),
    [
        _refusal({"modules_to_save": ["model.norm"]}, "modules_to_save", id="modules_to_save"),
        _refusal({"use_dora": True}, "DoRA", id="dora"),
        # a config that hides DoRA: the tensor names still give it away
        _refusal(
            {"use_dora": True},
            "lora_magnitude_vector",
            lambda a: _edit_config(a, use_dora=False),
            id="dora_tensors",
        ),
        _refusal(
            {"target_modules": ["embed_tokens", "q_proj"]},
            "embed_tokens",
            id="embedding_lora",
            peft_warns=("Model has `tie_word_embeddings=True`", "Setting `save_embedding_layers`"),
        ),
        _refusal(
            {"lora_bias": True},
            "lora_bias",
            id="lora_bias",
            peft_warns=("`lora_bias=True` was passed", r"Adapter 'default'. \d+ LoRA tensor"),
        ),
        _refusal({"bias": "all"}, "biases", id="bias_all"),
        _refusal({}, "only LoRA", lambda a: _edit_config(a, peft_type="IA3"), id="not_lora"),
        _refusal({"lora_alpha": 0}, "lora_alpha must be positive", id="zero_alpha"),
        _refusal(
            {},
            "cannot read adapter weights",
            lambda a: (a.dir / "adapter_model.safetensors").unlink(),
            id="no_weights",
        ),
        _refusal(
            {},
            "cannot read adapter config",
            lambda a: (a.dir / "adapter_config.json").unlink(),
            id="no_config",
        ),
    ],
)
def test_refusals(
    make_tiny_adapter: Callable[..., Adapter],
    tiny_base_gguf: Path,
    lora_kwargs: dict[str, object],
    message: str,
    edit: Callable[[Adapter], None] | None,
) -> None:
    adapter = make_tiny_adapter(**lora_kwargs)
    if edit:
        edit(adapter)
    out_dir = adapter.dir.parent / "out"
    out_dir.mkdir()
    with pytest.raises(ExportError, match=message):
        export_lora_gguf(adapter.dir, tiny_base_gguf, out_dir / "a.gguf")
    assert list(out_dir.iterdir()) == []  # nothing written, not even a temp file


@pytest.mark.filterwarnings("ignore:Model has `tie_word_embeddings=True`")
@pytest.mark.filterwarnings("ignore:Setting `save_embedding_layers`")
def test_refuses_lm_head_on_tied_base(
    make_tiny_adapter: Callable[..., Adapter], tiny_base_gguf: Path
) -> None:
    """The tiny base ties its embeddings, so there is no output.weight for a lm_head LoRA."""
    adapter = make_tiny_adapter(target_modules=["lm_head"])
    with pytest.raises(ExportError, match="output.weight, which the base GGUF lacks"):
        export_lora_gguf(adapter.dir, tiny_base_gguf, adapter.dir.parent / "a.gguf")


@pytest.mark.filterwarnings("ignore:Setting `save_embedding_layers`")
def test_lm_head_on_untied_base(make_tiny_adapter: Callable[..., Adapter], tmp_path: Path) -> None:
    """PEFT saves lm_head's frozen weight beside its LoRA: checked against the base, not written."""
    untied = {"tie_word_embeddings": False}
    adapter = make_tiny_adapter(model=untied, target_modules=["lm_head", "q_proj"])
    base = write_tiny_base(tmp_path / "untied.gguf", **untied)
    _, tensors = read_adapter(export_lora_gguf(adapter.dir, base, tmp_path / "a.gguf"))
    assert {"output.weight.lora_a", "output.weight.lora_b"} <= set(tensors)
    assert not any(name.startswith("output.weight") and "lora" not in name for name in tensors)

    resized = write_tiny_base(tmp_path / "resized.gguf", vocab_size=256, **untied)
    with pytest.raises(ExportError, match="resized vocabulary"):
        export_lora_gguf(adapter.dir, resized, tmp_path / "b.gguf")


def test_refuses_unknown_architecture(make_tiny_adapter: Callable[..., Adapter], tmp_path: Path) -> None:
    base = write_tiny_base(tmp_path / "mamba.gguf", arch="mamba")
    adapter = make_tiny_adapter()
    with pytest.raises(ExportError, match="'mamba' is not supported.*gemma3"):
        export_lora_gguf(adapter.dir, base, tmp_path / "a.gguf")


@pytest.mark.parametrize("arch", ["qwen2", "qwen3", "gemma2", "gemma3"])
def test_families_without_rope_permutation_keep_hf_row_order(
    make_tiny_adapter: Callable[..., Adapter], tmp_path: Path, arch: str
) -> None:
    """Same tensor layout as llama, but llama.cpp's converter leaves q/k rows alone there: B is
    written as PEFT saved it (scaling 1), so llama.cpp computes PEFT's delta unchanged."""
    base = write_tiny_base(tmp_path / f"{arch}.gguf", arch=arch)
    adapter = make_tiny_adapter(target_modules=ATTENTION)
    _, tensors = read_adapter(export_lora_gguf(adapter.dir, base, tmp_path / "a.gguf"))
    for module, layer in lora_modules(adapter.model).items():
        name = hf_module_to_gguf_name(module, N_LAYER)
        b = layer.lora_B["default"].weight.detach().numpy()
        np.testing.assert_array_equal(np.asarray(tensors[f"{name}.lora_b"].data), b)


@pytest.mark.model
def test_the_table_permutes_exactly_where_transformers_un_permutes() -> None:
    """transformers' GGUF loader is the other side of llama.cpp's converter: it undoes the q/k
    reordering (LlamaTensorProcessor) for exactly the architectures whose rows were reordered."""
    from transformers.modeling_gguf_pytorch_utils import TENSOR_PROCESSORS, LlamaTensorProcessor

    from tunegate.domain.architectures import ARCHITECTURES

    for row in ARCHITECTURES:
        un_permutes = TENSOR_PROCESSORS.get(row.gguf_arch) is LlamaTensorProcessor
        assert bool(row.rope_permuted) == un_permutes, row.gguf_arch


def test_refuses_adapter_for_another_base(
    make_tiny_adapter: Callable[..., Adapter], tmp_path: Path
) -> None:
    base = write_tiny_base(tmp_path / "wider.gguf", hidden_size=128)
    adapter = make_tiny_adapter(target_modules=ATTENTION)
    with pytest.raises(ExportError, match="another base model"):
        export_lora_gguf(adapter.dir, base, tmp_path / "a.gguf")


def test_failed_write_leaves_previous_file(
    make_tiny_adapter: Callable[..., Adapter], tiny_base_gguf: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    adapter = make_tiny_adapter()
    out_dir = adapter.dir.parent / "out"
    out_dir.mkdir()
    out = out_dir / "a.gguf"
    out.write_bytes(b"previous export")

    def disk_full(self: gguf.GGUFWriter, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(gguf.GGUFWriter, "write_tensors_to_file", disk_full)
    with pytest.raises(OSError, match="No space left"):
        export_lora_gguf(adapter.dir, tiny_base_gguf, out)
    assert out.read_bytes() == b"previous export"
    assert list(out_dir.iterdir()) == [out]  # the temp file is gone

    monkeypatch.undo()
    export_lora_gguf(adapter.dir, tiny_base_gguf, out)
    assert gguf.GGUFReader(out).get_field("general.type").contents() == "adapter"
    assert list(out_dir.iterdir()) == [out]
