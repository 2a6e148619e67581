"""Base model resolution and the conversion cache (the real conversion is in test_real_model)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from tunegate.training import model_cache
from tunegate.training.errors import TrainingFailed
from tunegate.training.spec import BaseModelRef


def test_hf_folders_are_used_in_place(tiny_base: Path, tmp_path: Path) -> None:
    ref = BaseModelRef("tiny", "hf", str(tiny_base))
    assert model_cache.resolve_hf_folder(ref, tmp_path) == tiny_base
    with pytest.raises(TrainingFailed) as caught:
        model_cache.resolve_hf_folder(BaseModelRef("x", "hf", str(tmp_path)), tmp_path)
    assert caught.value.code == "unsupported_base_model"


@pytest.mark.model
def test_a_missing_gguf_file_is_unsupported(tmp_path: Path) -> None:
    ref = BaseModelRef("gone", "gguf", str(tmp_path), "gone.gguf")
    with pytest.raises(TrainingFailed) as caught:
        model_cache.resolve_hf_folder(ref, tmp_path / "cache")
    assert caught.value.code == "unsupported_base_model"


def test_concurrent_first_loads_convert_once(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[Path] = []

    def slow_convert(ref: BaseModelRef, target: Path, tokenizer: object = None,
                     dtype: str = "float32") -> None:
        calls.append(target)
        time.sleep(0.3)  # long enough for the other thread to reach the lock
        temporary = target.with_name(".tmp")
        temporary.mkdir()
        (temporary / "config.json").write_text("{}")
        (temporary / "tunegate-source.json").write_text("{}")
        temporary.rename(target)

    monkeypatch.setattr(model_cache, "_convert_gguf", slow_convert)
    ref = BaseModelRef("Some Model:v1", "gguf", str(tmp_path), "m.gguf")
    results: list[Path] = []
    threads = [threading.Thread(target=lambda: results.append(
        model_cache.resolve_hf_folder(ref, tmp_path / "cache", dtype="bfloat16")))
        for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(calls) == 1
    assert results == [tmp_path / "cache" / "Some_Model_v1@bfloat16"] * 2


def test_cached_folder_is_the_folder_there_without_converting(tiny_base: Path,
                                                              tmp_path: Path) -> None:
    """What the worker's length check may read: an HF base, or a GGUF base's complete copy."""
    assert model_cache.cached_folder(BaseModelRef("tiny", "hf", str(tiny_base)), tmp_path) \
        == tiny_base
    ref = BaseModelRef("Some Model:v1", "gguf", str(tmp_path), "m.gguf")
    cache = tmp_path / "cache"
    assert model_cache.cached_folder(ref, cache) is None
    target = cache / "Some_Model_v1"
    target.mkdir(parents=True)
    (target / "config.json").write_text("{}")
    assert model_cache.cached_folder(ref, cache) is None  # no marker: not complete
    (target / "tunegate-source.json").write_text("{}")
    assert model_cache.cached_folder(ref, cache) == target  # an earlier version's float32 copy
    in_dtype = model_cache.cache_folder(ref, cache, "bfloat16")
    in_dtype.mkdir()
    (in_dtype / "config.json").write_text("{}")
    (in_dtype / "tunegate-source.json").write_text("{}")
    assert model_cache.cached_folder(ref, cache) == in_dtype  # the copy in a dtype first
    assert not (tmp_path / "m.gguf").exists()  # nothing was converted, nothing read


def test_each_dtype_has_its_own_copy(tmp_path: Path) -> None:
    ref = BaseModelRef("Some Model:v1", "gguf", str(tmp_path), "m.gguf")
    assert model_cache.cache_folder(ref, tmp_path, "bfloat16").name == "Some_Model_v1@bfloat16"
    assert model_cache.cache_folder(ref, tmp_path, "float32").name == "Some_Model_v1@float32"
    with pytest.raises(ValueError):
        model_cache.cache_folder(ref, tmp_path, "int8")


@pytest.mark.model
def test_the_copy_in_bfloat16_is_what_casting_the_float32_copy_gave(
        converted_smollm2: Path, trained_smollm2: Path) -> None:
    """Training loads exactly the weights it loaded before the cache stopped keeping float32:
    the GGUF dequantized and rounded to bfloat16 once, at conversion instead of at every load,
    at half the size on disk. (So the trained adapters are the same, bit for bit.)"""
    import torch

    from tunegate.training.precision import cpu_base_dtype

    if cpu_base_dtype() != "bfloat16":
        pytest.skip("this CPU trains in float32: its copy is the float32 one")
    name = "SmolLM2-135M-Instruct"
    old = model_cache.load_model(BaseModelRef(name, "hf", str(converted_smollm2)), "",
                                 dtype="bfloat16")
    new = model_cache.load_model(BaseModelRef(name, "hf", str(trained_smollm2)), "",
                                 dtype="bfloat16")
    old_state, new_state = old.state_dict(), new.state_dict()
    assert old_state.keys() == new_state.keys()
    for key, tensor in new_state.items():
        assert tensor.dtype == torch.bfloat16
        assert torch.equal(tensor, old_state[key]), key

    def weights_bytes(folder: Path) -> int:
        return sum(p.stat().st_size for p in folder.glob("*.safetensors"))

    assert weights_bytes(trained_smollm2) * 2 == pytest.approx(weights_bytes(converted_smollm2),
                                                               rel=0.01)
    assert trained_smollm2.name == f"{name}@bfloat16"
