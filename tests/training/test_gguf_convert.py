"""A GGUF base converted a tensor at a time (tunegate.training.gguf_convert) is exactly what
transformers' own GGUF loading gives, tensor for tensor: the embedded SmolLM2 (llama, Q4_1,
q/k rows un-permuted), and a random base of each other family at toy widths
(bench/families.py's configs) written by llama.cpp's converter as ``tunegate models add``
does. Its peak memory is bench/families.py's to measure."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import tiers
from tunegate.training import gguf_convert

from .conftest import THIRD_PARTY_WARNINGS

torch = tiers.lazy("torch")
pytestmark = [pytest.mark.model, *(pytest.mark.filterwarnings(w) for w in THIRD_PARTY_WARNINGS)]

# What each adds to llama's path (the embedded model's): Gemma's norms (1 + w in the GGUF),
# phi3's fused q/k/v and gate/up, qwen3's q/k norms and a head size of its own. Left out for
# time: mistral, written as a llama GGUF (the embedded model's path); qwen2, which does not
# convert with SmolLM2's tokenizer (bench/README.md, families.py).
FAMILIES = ["gemma3", "phi3", "qwen3"]


def same_as_transformers(gguf: Path, folder: Path, dtype: torch.dtype) -> None:
    from transformers import AutoModelForCausalLM

    ours = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype)
    theirs = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=dtype)
    mine, reference = ours.state_dict(), theirs.state_dict()
    assert mine.keys() == reference.keys()
    assert [name for name in mine if not torch.equal(mine[name], reference[name])] == []
    differing = {key for key, value in ours.config.to_dict().items()
                 if theirs.config.to_dict().get(key) != value}
    # transformers' model remembers the file it came from; the copy is a plain checkpoint.
    assert differing <= {"_name_or_path", "architectures"}, differing
    assert ours.config.architectures == [type(theirs).__name__]


def test_the_embedded_model_converts_to_what_transformers_loads(
        converted_smollm2: Path) -> None:
    from tests.conftest import embedded_ref

    ref = embedded_ref()
    # The session's copy, ours: float32 SmolLM2 is two shards and their index.
    assert (converted_smollm2 / gguf_convert.INDEX).is_file()
    same_as_transformers(Path(ref.path) / str(ref.gguf_file), converted_smollm2, torch.float32)


@pytest.mark.parametrize("family", FAMILIES)
def test_each_family_converts_to_what_transformers_loads(
        family: str, model_cache: Path, converted_smollm2: Path, tmp_path: Path) -> None:
    from bench.families import child_build
    from tunegate.adapters.convert import convert_hf_folder

    (tmp_path / "tokenizer-cache").symlink_to(model_cache)  # SmolLM2's, converted already
    child_build(family, tmp_path, tiny=True)
    gguf = tmp_path / "models" / f"{family}.gguf"
    gguf.parent.mkdir()
    convert_hf_folder(tmp_path / f"{family}-hf", gguf)
    gguf_convert.convert(gguf, tmp_path / "copy", torch.bfloat16)
    same_as_transformers(gguf, tmp_path / "copy", torch.bfloat16)
