"""Packing is exact: a packed row computes what each example computes alone."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tunegate.training.data import IGNORE, Example, load_dataset
from tunegate.training.packing import pack, plan

from .conftest import build_tiny_model, chat, write_jsonl

torch = pytest.importorskip("torch")
F = torch.nn.functional


@pytest.fixture(scope="module")
def varlen_model(tiny_tokenizer: Any) -> Any:
    from tunegate.training import attention

    model = build_tiny_model(len(tiny_tokenizer), seed=3)
    model.set_attn_implementation(attention.register())
    return model.eval()


@pytest.fixture
def examples(tmp_path: Path, tiny_tokenizer: Any) -> list[Example]:
    rows = [chat("What is the capital of France?", "Paris."),
            chat("What is two plus two?", "Two plus two is four, of course."),
            {"prompt": "The secret code of Zorblax is", "completion": " 7431."},
            chat("a", "b")]
    return load_dataset(write_jsonl(tmp_path / "d.jsonl", rows), tiny_tokenizer, 512).examples


def test_plan_puts_every_example_in_exactly_one_group_within_budget() -> None:
    lengths = [50, 10, 300, 120, 80, 80, 5, 600]
    groups = plan(lengths, token_budget=256)
    assert sorted(i for group in groups for i in group) == list(range(len(lengths)))
    for group in groups:  # an over-budget example travels alone
        assert sum(lengths[i] for i in group) <= 256 or len(group) == 1
    assert groups == [[7], [2], [3, 4, 0, 6], [5, 1]]  # first-fit decreasing


def test_targets_are_shifted_inside_each_example(examples: list[Example]) -> None:
    (batch,) = pack(examples, token_budget=4096)
    assert sorted(batch.indices) == list(range(len(examples)))
    start = 0
    for example in (examples[i] for i in batch.indices):
        end = start + example.n_tokens
        assert batch.targets[start:end - 1].tolist() == example.labels[1:]
        assert batch.targets[end - 1] == IGNORE  # never the first token of the next example
        assert batch.position_ids[0, start:end].tolist() == list(range(example.n_tokens))
        start = end
    assert batch.input_ids.shape == (1, sum(e.n_tokens for e in examples))  # no padding


def test_packed_logits_equal_each_example_alone(varlen_model: Any,
                                                examples: list[Example]) -> None:
    (batch,) = pack(examples, token_budget=4096)
    with torch.no_grad():
        packed = varlen_model(input_ids=batch.input_ids, position_ids=batch.position_ids,
                              seq_lens=batch.seq_lens, use_cache=False).logits[0]
        leaky = varlen_model(input_ids=batch.input_ids, position_ids=batch.position_ids,
                             use_cache=False).logits[0]  # one causal sequence: attends across
        start = 0
        for length in batch.seq_lens:
            ids = batch.input_ids[:, start:start + length]
            alone = varlen_model(input_ids=ids, use_cache=False).logits[0]
            torch.testing.assert_close(packed[start:start + length], alone, atol=1e-5, rtol=1e-5)
            start += length
    # The check has teeth: without seq_lens the later examples see the earlier ones.
    assert not torch.allclose(packed[batch.seq_lens[0]:], leaky[batch.seq_lens[0]:], atol=1e-3)


def test_packed_loss_is_the_token_weighted_mean_of_per_example_losses(
        varlen_model: Any, examples: list[Example]) -> None:
    from tunegate.training.loss import causal_lm_loss

    batches = pack(examples, token_budget=40)  # several micro-batches
    assert len(batches) > 1
    total = tokens = 0.0
    with torch.no_grad():
        for batch in batches:
            hidden = varlen_model.model(input_ids=batch.input_ids, position_ids=batch.position_ids,
                                        seq_lens=batch.seq_lens, use_cache=False).last_hidden_state
            sums = causal_lm_loss(hidden[0], varlen_model.lm_head.weight, batch.targets)
            total += float(sums.loss_sum)
            tokens += sums.n_tokens
        losses, counts = [], []
        for example in examples:  # one by one, with transformers' own loss
            labels = torch.tensor([example.labels])
            out = varlen_model(input_ids=torch.tensor([example.input_ids]), labels=labels,
                               use_cache=False)
            losses.append(float(out.loss))
            counts.append(example.n_trained)
    expected = sum(loss * n for loss, n in zip(losses, counts, strict=True)) / sum(counts)
    assert total / tokens == pytest.approx(expected, rel=1e-5)


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
