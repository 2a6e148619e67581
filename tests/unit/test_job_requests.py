import pytest

from tunegate.domain.job_requests import check_metadata, normalize_method, seed_for
from tunegate.errors import InvalidRequest


def test_no_method_means_supervised_with_auto_everything() -> None:
    assert normalize_method({}) == {"type": "supervised", "supervised": {"hyperparameters": {
        "batch_size": "auto", "learning_rate_multiplier": "auto", "n_epochs": "auto"}}}


def test_deprecated_hyperparameters_fill_the_supervised_method() -> None:
    method = normalize_method({"hyperparameters": {"n_epochs": 4}})
    assert method["supervised"]["hyperparameters"]["n_epochs"] == 4
    assert method["supervised"]["hyperparameters"]["batch_size"] == "auto"


def test_both_places_at_once_is_refused() -> None:
    with pytest.raises(InvalidRequest) as raised:
        normalize_method({"hyperparameters": {"n_epochs": 4}, "method": {
            "type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 2}}}})
    assert raised.value.param == "hyperparameters"


def test_dpo_keeps_beta() -> None:
    method = normalize_method({"method": {"type": "dpo", "dpo": {"hyperparameters": {"beta": 0.2}}}})
    assert method == {"type": "dpo", "dpo": {"hyperparameters": {
        "beta": 0.2, "batch_size": "auto", "learning_rate_multiplier": "auto", "n_epochs": "auto"}}}


def test_reinforcement_is_refused_clearly() -> None:
    with pytest.raises(InvalidRequest) as raised:
        normalize_method({"method": {"type": "reinforcement"}})
    assert raised.value.param == "method.type"
    assert raised.value.code == "unsupported_method"


def test_metadata_key_length() -> None:
    check_metadata({"k" * 64: "v"})
    with pytest.raises(InvalidRequest):
        check_metadata({"k" * 65: "v"})


def test_seed_is_kept_or_generated() -> None:
    assert seed_for({"seed": 0}) == 0
    assert 0 <= seed_for({}) <= 2_147_483_647
