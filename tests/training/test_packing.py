"""Packing is exact: a packed row (shared prefix or not) computes what each example computes alone."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests import tiers
from tunegate.training.data import IGNORE, Example, load_dataset
from tunegate.training.packing import MicroBatch, pack, plan, shared_prefix

from .conftest import build_tiny_model, chat, write_jsonl

torch = tiers.lazy("torch")
F = tiers.lazy("torch.nn.functional")

TOOLS = [{"type": "function", "function": {
    "name": f"tool_{i}", "description": "does a thing " * 6,
    "parameters": {"type": "object", "properties": {"x": {"type": "integer"}}}}}
    for i in range(3)]


@pytest.fixture(scope="module")
def varlen_model(tiny_tokenizer: Any) -> Any:
    from tunegate.training import attention

    model = build_tiny_model(len(tiny_tokenizer), seed=3)
    model.set_attn_implementation(attention.register())
    return model.eval()


def examples_of(tmp_path: Path, tokenizer: Any, rows: list[dict[str, Any]]) -> list[Example]:
    return load_dataset(write_jsonl(tmp_path / "d.jsonl", rows), tokenizer, 1024).examples


@pytest.fixture
def examples(tmp_path: Path, tiny_tokenizer: Any) -> list[Example]:
    rows = [chat("What is the capital of France?", "Paris."),
            chat("What is two plus two?", "Two plus two is four, of course."),
            {"prompt": "The secret code of Zorblax is", "completion": " 7431."},
            chat("a", "b")]
    return examples_of(tmp_path, tiny_tokenizer, rows)


@pytest.fixture
def tool_examples(tmp_path: Path, tiny_tokenizer: Any) -> list[Example]:
    """Rows that share a long prefix (system prompt + tool list), like a function-calling file."""
    rows = [{"tools": TOOLS, "messages": [
        {"role": "system", "content": "You control a drone."},
        {"role": "user", "content": question},
        {"role": "assistant", "content": answer}]}
        for question, answer in [("Take off.", "Taking off."), ("Land now please.", "Landing."),
                                 ("Go up", "Up we go, ten meters."), ("Stop", "Stopped.")]]
    return examples_of(tmp_path, tiny_tokenizer, rows)


def forward(model: Any, batch: MicroBatch) -> Any:
    return model(input_ids=batch.input_ids, position_ids=batch.position_ids, use_cache=False,
                 **batch.attention_kwargs()).logits[0]


def alone(model: Any, example: Example) -> Any:
    return model(input_ids=torch.tensor([example.input_ids]), use_cache=False).logits[0]


def test_plan_puts_every_example_in_exactly_one_group_within_budget() -> None:
    lengths = [50, 10, 300, 120, 80, 80, 5, 600]
    groups = plan(lengths, token_budget=256)
    assert sorted(i for group in groups for i in group) == list(range(len(lengths)))
    for group in groups:  # an over-budget example travels alone
        assert sum(lengths[i] for i in group) <= 256 or len(group) == 1
    assert groups == [[7], [2], [3, 4, 0, 6], [5, 1]]  # first-fit decreasing
    # with a shared prefix of 40 tokens, the budget counts each member's own 60 tokens
    assert plan([100, 100, 100], token_budget=180, prefix=40) == [[0, 1, 2]]
    assert plan([100, 100, 100], token_budget=179, prefix=40) == [[0, 1], [2]]


def test_targets_are_each_examples_own_next_tokens(examples: list[Example]) -> None:
    (batch,) = pack(examples, token_budget=4096)
    assert batch.prefix == 0 and sorted(batch.indices) == list(range(len(examples)))
    assert batch.input_ids.shape == (1, sum(e.n_tokens for e in examples))  # no padding
    pairs = list(zip(batch.target_rows.tolist(), batch.targets.tolist(), strict=True))
    start = 0
    for example in (examples[i] for i in batch.indices):
        expected = [(start + p, label) for p, label in enumerate(example.labels[1:])
                    if label != IGNORE]
        assert [pair for pair in pairs if start <= pair[0] < start + example.n_tokens] == expected
        assert batch.position_ids[0, start:start + example.n_tokens].tolist() == list(
            range(example.n_tokens))
        start += example.n_tokens


def test_packed_logits_equal_each_example_alone(varlen_model: Any,
                                                examples: list[Example]) -> None:
    (batch,) = pack(examples, token_budget=4096)
    with torch.no_grad():
        packed = forward(varlen_model, batch)
        leaky = varlen_model(input_ids=batch.input_ids, position_ids=batch.position_ids,
                             use_cache=False).logits[0]  # one causal sequence: attends across
        start = 0
        for index in batch.indices:
            example = examples[index]
            torch.testing.assert_close(packed[start:start + example.n_tokens],
                                       alone(varlen_model, example), atol=1e-5, rtol=1e-5)
            start += example.n_tokens
    # The check has teeth: without seq_lens the later examples see the earlier ones.
    first = batch.seq_lens[0]
    assert not torch.allclose(packed[first:], leaky[first:], atol=1e-3)


def test_a_shared_prefix_is_computed_once_and_changes_nothing(
        varlen_model: Any, tool_examples: list[Example]) -> None:
    prefix = shared_prefix(tool_examples)
    assert prefix > 50  # system prompt + tool list
    (batch,) = pack(tool_examples, token_budget=4096)
    assert batch.prefix == prefix
    assert batch.n_tokens == prefix + sum(e.n_tokens - prefix for e in tool_examples)
    assert batch.example_tokens == sum(e.n_tokens for e in tool_examples)
    with torch.no_grad():
        packed = forward(varlen_model, batch)
        start = prefix
        for index in batch.indices:
            example = tool_examples[index]
            own = example.n_tokens - prefix
            expected = alone(varlen_model, example)
            torch.testing.assert_close(packed[:prefix], expected[:prefix], atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(packed[start:start + own], expected[prefix:],
                                       atol=1e-5, rtol=1e-5)
            start += own


def test_prefix_sharing_needs_a_worthwhile_common_start(examples: list[Example]) -> None:
    assert shared_prefix(examples) == 0  # the prompt/completion row starts differently
    same = Example([1, 2, 3], [IGNORE, 2, 3], 1)
    assert shared_prefix([same, same]) == 2  # each keeps at least one token of its own


@pytest.mark.parametrize("budget", [4096, 60])
def test_packed_loss_is_the_token_weighted_mean_of_per_example_losses(
        varlen_model: Any, examples: list[Example], tool_examples: list[Example],
        budget: int) -> None:
    from tunegate.training.loss import causal_lm_loss

    for group in (examples, tool_examples):
        batches = pack(group, token_budget=budget)
        total = tokens = 0.0
        with torch.no_grad():
            for batch in batches:
                hidden = varlen_model.model(input_ids=batch.input_ids,
                                            position_ids=batch.position_ids, use_cache=False,
                                            **batch.attention_kwargs()).last_hidden_state
                sums = causal_lm_loss(hidden[0], varlen_model.lm_head.weight, batch.targets,
                                      batch.target_rows)
                total += float(sums.loss_sum)
                tokens += sums.n_tokens
            losses, counts = [], []
            for example in group:  # one by one, with transformers' own loss
                out = varlen_model(input_ids=torch.tensor([example.input_ids]),
                                   labels=torch.tensor([example.labels]), use_cache=False)
                losses.append(float(out.loss))
                counts.append(example.n_trained)
        expected = sum(loss * n for loss, n in zip(losses, counts, strict=True)) / sum(counts)
        assert total / tokens == pytest.approx(expected, rel=1e-5)


@pytest.mark.model
def test_fused_cross_entropy_matches_the_plain_one_in_value_and_gradient() -> None:
    from tunegate.training.loss import causal_lm_loss

    torch.manual_seed(0)
    hidden = torch.randn(37, 16, requires_grad=True)
    weight = torch.randn(50, 16)
    targets = torch.randint(0, 50, (37,))
    targets[::3] = IGNORE
    sums = causal_lm_loss(hidden, weight, targets, chunk_rows=5)
    (sums.loss_sum * 0.5).backward()
    fused_grad = hidden.grad.clone()
    hidden.grad = None
    logits = hidden @ weight.T
    expected = F.cross_entropy(logits, targets, ignore_index=IGNORE, reduction="sum")
    (expected * 0.5).backward()
    torch.testing.assert_close(sums.loss_sum, expected.detach())
    torch.testing.assert_close(fused_grad, hidden.grad)
    keep = targets != IGNORE
    assert sums.n_tokens == int(keep.sum())
    assert sums.n_correct == int((logits.argmax(-1)[keep] == targets[keep]).sum())
    # explicit rows, with a repeat: the repeated row counts (and gets gradient) twice
    hidden.grad = None
    rows, wanted = torch.tensor([0, 4, 4]), torch.tensor([3, 7, 9])
    (causal_lm_loss(hidden, weight, wanted, rows).loss_sum).backward()
    plain = hidden.detach().clone().requires_grad_(True)
    F.cross_entropy(plain[rows] @ weight.T, wanted, reduction="sum").backward()
    torch.testing.assert_close(hidden.grad, plain.grad)
