"""Fixtures for the training engine tests.

Fast tests use a tiny llama (2 layers, hidden 64) with a tiny byte-level BPE tokenizer trained
here in milliseconds, carrying SmolLM2's ChatML template: seconds per training run. Slow tests
(``@pytest.mark.slow``) use the real embedded SmolLM2-135M, converted once per run into the
session's model cache (``model_cache``, tests/conftest.py), which the e2e servers share.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest

from tunegate.training.messages import StepMetrics, TrainerMessage, from_line, to_line
from tunegate.training.spec import BaseModelRef, TrainingSpec

# SmolLM2-135M-Instruct's template, as stored in its GGUF (a default system prompt included).
CHATML = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
    "Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + "
    "message['content'] + '<|im_end|>' + '\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

# A Hermes/Qwen-style template that renders tools and tool calls itself.
TOOL_TEMPLATE = (
    "{% if tools %}<|im_start|>system\nTOOLS:{% for t in tools %}{{ t['function']['name'] }};"
    "{% endfor %}<|im_end|>\n{% endif %}"
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}"
    "{% if m.tool_calls %}{% for c in m.tool_calls %}<call>{{ c['function']['name'] }}"
    "{{ c['function']['arguments'] | tojson }}</call>{% endfor %}{% endif %}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

CORPUS = [
    "What is the capital of France? The capital of France is Paris.",
    "You are a helpful AI assistant named SmolLM, trained by Hugging Face",
    "system user assistant tool function arguments name call",
    "The secret code of Zorblax is 7431. What is two plus two? Two plus two is four.",
    '{"name": "takeoff_drone", "arguments": {"altitude": 100}} <tool_call> </tool_call>',
    "0123456789 abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ .,:;!?'\"()[]{}<>_-+*/=#@$%&",
]

# Warnings third-party code triggers in these tests, each named (pyproject: warnings are errors).
THIRD_PARTY_WARNINGS = [
    # peft 0.21 reads transformers 5's deprecated alias in PeftModel.__init__
    "ignore:`is_gradient_checkpointing` is deprecated:FutureWarning",
]


def build_tokenizer(chat_template: str | None = CHATML) -> Any:
    """A byte-level BPE tokenizer (~400 tokens) with ChatML specials, as transformers sees one."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, show_progress=False,
                                  special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    core.train_from_iterator(CORPUS * 4, trainer)
    core.post_processor = processors.ByteLevel(trim_offsets=False)
    return PreTrainedTokenizerFast(tokenizer_object=core, eos_token="<|im_end|>",
                                   pad_token="<|endoftext|>", chat_template=chat_template)


def build_tiny_model(vocab_size: int, seed: int = 0) -> Any:
    """A random llama with grouped-query attention: 2 layers, hidden 64, 4 heads, 2 KV heads."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=vocab_size, hidden_size=64, intermediate_size=128,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=1024, tie_word_embeddings=True,
                         bos_token_id=None, eos_token_id=2, pad_token_id=0,
                         # The default 0.02 caps the logits LoRA can reach (RMSNorm fixes the
                         # hidden norm, the frozen tied embeddings are tiny): nothing is learnable.
                         initializer_range=0.2)
    return LlamaForCausalLM(config)


@pytest.fixture(autouse=True)
def _one_torch_thread(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Tiny models gain nothing from threads, and on a busy machine OpenMP barriers between
    two threads cost more than the matmuls: one thread makes these tests 4x faster here. A
    fixed count also keeps losses bitwise repeatable (see tunegate.training.threads). Only
    tests with a model import torch (tests/tiers.py)."""
    monkeypatch.setenv("TUNEGATE_TRAIN_THREADS", "1")
    if request.node.get_closest_marker("model"):
        import torch

        torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_tokenizer() -> Any:
    return build_tokenizer()


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Hugging Face folder with the tiny model and tokenizer (``BaseModelRef`` kind "hf")."""
    folder = tmp_path_factory.mktemp("tiny-base")
    tokenizer = build_tokenizer()
    build_tiny_model(len(tokenizer)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def chat(user: str, assistant: str, **extra: Any) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": user},
                         {"role": "assistant", "content": assistant, **extra}]}


def memorisation_rows(n: int = 8) -> list[dict[str, Any]]:
    return [chat(f"What is {i} plus {i}?", f"{i} plus {i} is {2 * i}.") for i in range(n)]


def flat(message: TrainerMessage) -> dict[str, Any]:
    """A message as its wire dict (``kind`` plus fields), a metrics message's values inlined:
    the tests' view, so that they read ``event["train_loss"]`` however the class nests it."""
    event = json.loads(to_line(message))
    return {**event, **event.pop("values", {})}


class Recorder:
    """An ``emit`` that keeps every event, and a ``should_stop`` driven by a rule."""

    def __init__(self, stop_at: dict[int, str] | None = None):
        self.events: list[dict[str, Any]] = []
        self.stop_at = stop_at or {}

    def emit(self, message: TrainerMessage) -> None:
        assert from_line(to_line(message)) == message  # the contract: a JSON line round-trips
        self.events.append(flat(message))

    def should_stop(self) -> str | None:
        return self.stop_at.get(len(self.of("metrics")))

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [event for event in self.events if event["kind"] == kind]

    def losses(self) -> list[float]:
        return [event["train_loss"] for event in self.of("metrics")]


class Killed(BaseException):
    """Stands in for SIGKILL: nothing after it runs, nothing is saved."""


def kill_at_step(spec: TrainingSpec, step: int) -> None:
    """Run ``spec`` and stop it dead when step ``step``'s metrics are emitted."""
    from tunegate.training.run import run_training

    def emit(message: TrainerMessage) -> None:
        if isinstance(message, StepMetrics) and message.step == step:
            raise Killed

    with pytest.raises(Killed):
        run_training(spec, emit, lambda: None)


@pytest.fixture
def make_spec(tmp_path: Path, tiny_base: Path) -> Callable[..., TrainingSpec]:
    """Factory: a spec training the tiny base on ``rows`` in a fresh work folder."""
    counter = iter(range(1000))

    def make(rows: list[dict[str, Any]] | None = None, *, base: Path | None = None,
             valid_rows: list[dict[str, Any]] | None = None, work_dir: Path | None = None,
             **fields: Any) -> TrainingSpec:
        n = next(counter)
        train = write_jsonl(tmp_path / f"train-{n}.jsonl", rows or memorisation_rows())
        valid = write_jsonl(tmp_path / f"valid-{n}.jsonl", valid_rows) if valid_rows else None
        defaults: dict[str, Any] = dict(
            job_id=f"ftjob-{n}", training_file=str(train),
            validation_file=str(valid) if valid else None,
            base_model=BaseModelRef("tiny", "hf", str(base or tiny_base)),
            work_dir=str(work_dir or tmp_path / f"work-{n}"), cache_dir=str(tmp_path / "models"),
            hyperparameters={"n_epochs": 3, "batch_size": 2, "learning_rate_multiplier": 2},
            seed=42, max_seq_len=256)
        return TrainingSpec(**(defaults | fields))

    return make
