"""The "auto" rules (pure functions, no torch); the bounds are tested with the method value
(tests/unit/test_methods.py)."""

from __future__ import annotations

import pytest

from tunegate.domain.methods import Method
from tunegate.training import hyperparams
from tunegate.training.hyperparams import (
    auto_batch_size,
    auto_learning_rate_multiplier,
    auto_n_epochs,
    resolve,
    steps_per_epoch,
)


@pytest.mark.parametrize(("n_examples", "epochs"), [
    (1, 25), (3, 25), (4, 25), (5, 20), (10, 10), (20, 5), (33, 3), (34, 3), (100, 3),
    (8333, 3), (8334, 2), (12_500, 2), (12_501, 1), (30_000, 1),
])
def test_n_epochs_follows_openais_published_rule(n_examples: int, epochs: int) -> None:
    assert auto_n_epochs(n_examples) == epochs


@pytest.mark.parametrize(("n_examples", "batch"), [
    (1, 1), (10, 1), (64, 1), (65, 2), (449, 8), (2048, 32), (100_000, 32),
])
def test_batch_size_aims_at_64_steps_per_epoch(n_examples: int, batch: int) -> None:
    assert auto_batch_size(n_examples) == batch


@pytest.mark.parametrize(("batch", "multiplier"), [(1, 0.5), (2, 0.5), (4, 0.707), (8, 1.0),
                                                   (16, 1.414), (32, 2.0), (256, 2.0)])
def test_learning_rate_multiplier_scales_with_sqrt_batch(batch: int, multiplier: float) -> None:
    assert auto_learning_rate_multiplier(batch) == multiplier


def test_resolve_replaces_auto_and_keeps_explicit_values() -> None:
    resolved = resolve(Method.of("supervised", {"n_epochs": "auto", "batch_size": 4}),
                       n_examples=449)
    assert resolved.to_dict() == {"n_epochs": 3, "batch_size": 4,
                                  "learning_rate_multiplier": 0.707}
    assert resolve(Method(), 20).to_dict() == {"n_epochs": 5, "batch_size": 1,
                                               "learning_rate_multiplier": 0.5}
    explicit = resolve(Method.of("supervised", {"n_epochs": 2, "batch_size": 3,
                                                "learning_rate_multiplier": 0.1}), 50)
    assert explicit.learning_rate == pytest.approx(0.1 * hyperparams.BASE_LEARNING_RATE)


def test_explicit_values_keep_their_kind() -> None:
    resolved = resolve(Method.of("supervised", {"learning_rate_multiplier": 2}), 10)
    assert resolved.learning_rate_multiplier == 2.0
    assert isinstance(resolved.learning_rate_multiplier, float)


def test_steps_per_epoch_counts_the_short_last_batch() -> None:
    assert steps_per_epoch(10, 4) == 3
    assert steps_per_epoch(8, 4) == 2
    assert steps_per_epoch(3, 8) == 1


def test_dpo_resolves_beta_and_supervised_does_not() -> None:
    assert resolve(Method.of("dpo"), 20).to_dict() == {
        "n_epochs": 5, "batch_size": 1, "learning_rate_multiplier": 0.5, "beta": 0.1}
    assert resolve(Method.of("dpo", {"beta": 2}), 20).beta == 2.0
    assert "beta" not in resolve(Method(), 20).to_dict()


GRADER = {"type": "string_check", "name": "exact", "input": "{{ sample.output_text }}",
          "reference": "{{ item.answer }}", "operation": "eq"}


def reinforcement(**values: object) -> Method:
    return Method.of("reinforcement", values, grader=GRADER)


@pytest.mark.parametrize(("n_prompts", "batch"), [
    (1, 1), (3, 3), (4, 4), (36, 4), (300, 5), (5000, 16),
])
def test_reinforcement_batch_is_prompts_per_step_from_4_to_16(n_prompts: int, batch: int) -> None:
    assert resolve(reinforcement(), n_prompts).batch_size == batch


@pytest.mark.parametrize(("compute", "group"), [(0.01, 2), (0.5, 2), (1.0, 4), (2.0, 8),
                                                 (10.0, 16)])
def test_compute_multiplier_sets_the_group_size(compute: float, group: int) -> None:
    assert resolve(reinforcement(compute_multiplier=compute), 36).group_size == group


@pytest.mark.parametrize(("effort", "budget"), [("default", 128), ("low", 64), ("medium", 128),
                                                ("high", 256)])
def test_reasoning_effort_sets_the_completion_budget(effort: str, budget: int) -> None:
    assert resolve(reinforcement(reasoning_effort=effort), 36).completion_tokens == budget


def test_reinforcement_auto_values_are_resolved_and_echoed_under_openais_names() -> None:
    resolved = resolve(reinforcement(), 36)  # 3 epochs of 9 steps: 27 steps
    assert resolved.to_dict() == {"n_epochs": 3, "batch_size": 4,
                                  "learning_rate_multiplier": 0.3, "compute_multiplier": 1.0,
                                  "eval_interval": 3, "eval_samples": 1,
                                  "reasoning_effort": "default"}
    # The job's method takes them back as they are (what the worker stores).
    assert reinforcement().resolved(resolved.to_dict()).hyperparameters.to_wire() == {
        "batch_size": 4, "compute_multiplier": 1.0, "eval_interval": 3, "eval_samples": 1,
        "learning_rate_multiplier": 0.3, "n_epochs": 3, "reasoning_effort": "default"}
    given = resolve(reinforcement(eval_interval=2, eval_samples=3, batch_size=6), 36)
    assert (given.eval_interval, given.eval_samples, given.batch_size) == (2, 3, 6)
