"""Model aliases (setting TUNEGATE_MODEL_ALIASES): parsing, and what a name resolves to."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.test_architectures import write_gguf
from tunegate.domain import catalog
from tunegate.domain.catalog import EMBEDDED_MODEL_ID
from tunegate.domain.jobs import base_name_of
from tunegate.settings import (
    DEFAULT_ALIAS_TARGET,
    OPENAI_MODEL_NAMES,
    Settings,
    format_aliases,
)

# OpenAI's fine-tunable names that unchanged scripts use (issue 14, the reference's job model
# enum, token-limit table and SFT guide).
FINE_TUNABLE = ("gpt-4o-mini-2024-07-18", "gpt-4o-2024-08-06", "gpt-4.1-2025-04-14",
                "gpt-4.1-mini-2025-04-14", "gpt-4.1-nano-2025-04-14", "gpt-3.5-turbo",
                "gpt-3.5-turbo-0125", "gpt-3.5-turbo-1106", "babbage-002", "davinci-002",
                "gpt-4o-mini", "o4-mini")


def aliases(value: str) -> dict[str, str]:
    return dict(Settings.from_env({"TUNEGATE_MODEL_ALIASES": value}).model_aliases)


def test_by_default_every_fine_tunable_openai_name_stands_for_the_embedded_model() -> None:
    default = dict(Settings().model_aliases)
    assert DEFAULT_ALIAS_TARGET == EMBEDDED_MODEL_ID
    assert set(FINE_TUNABLE) <= set(default) == set(OPENAI_MODEL_NAMES)
    assert set(default.values()) == {EMBEDDED_MODEL_ID}
    assert Settings.from_env({}).model_aliases == Settings().model_aliases
    assert default["gpt-4o-mini-2024-07-18"] == EMBEDDED_MODEL_ID
    assert EMBEDDED_MODEL_ID not in default


@pytest.mark.parametrize("value", ["off", "OFF", "disabled", "none", "", "  "])
def test_aliases_can_be_turned_off(value: str) -> None:
    assert aliases(value) == {}


def test_a_list_of_name_base_entries_later_ones_winning() -> None:
    assert aliases("gpt-4o-mini=Qwen2.5-0.5B, my-model = SmolLM2-135M-Instruct") == {
        "gpt-4o-mini": "Qwen2.5-0.5B", "my-model": "SmolLM2-135M-Instruct"}
    assert aliases("a=X,a=Y") == {"a": "Y"}
    star = aliases("*=Big,gpt-4.1-nano-2025-04-14=Small")
    assert set(star) == set(OPENAI_MODEL_NAMES)
    assert star["gpt-4.1-nano-2025-04-14"] == "Small" and star["gpt-4o-mini"] == "Big"
    assert aliases("gpt-4o=Small,*=Big")["gpt-4o"] == "Big"


@pytest.mark.parametrize("value", ["gpt-4o", "=X", "gpt-4o=", "ft:x=Y", "a b=X", "a=X,,b=Y",
                                   "{}", '{"gpt-4o": "X"}'])
def test_malformed_values_are_refused_naming_the_entry(value: str) -> None:
    with pytest.raises(ValueError, match="TUNEGATE_MODEL_ALIASES"):
        Settings.from_env({"TUNEGATE_MODEL_ALIASES": value})


@pytest.mark.parametrize("value", ["off", "a=X,b=Y", "*=SmolLM2-135M-Instruct"])
def test_the_formatted_value_reads_back_the_same(value: str) -> None:
    parsed = Settings.from_env({"TUNEGATE_MODEL_ALIASES": value}).model_aliases
    assert Settings.from_env({"TUNEGATE_MODEL_ALIASES": format_aliases(parsed)}).model_aliases \
        == parsed


def test_an_alias_resolves_to_its_base_and_a_real_base_of_that_name_wins(tmp_path: Path) -> None:
    models = tmp_path / "models"
    models.mkdir()
    table = (("gpt-4o-mini", EMBEDDED_MODEL_ID), ("gpt-4o", "missing"), ("local", "local"))
    alias = catalog.find_alias(models, table, "gpt-4o-mini")
    assert alias is not None and alias.base is not None and alias.base.id == EMBEDDED_MODEL_ID
    missing = catalog.find_alias(models, table, "gpt-4o")
    assert missing is not None and (missing.target, missing.base) == ("missing", None)
    assert catalog.find_alias(models, table, "gpt-4.1") is None
    assert catalog.find_alias(models, (), "gpt-4o-mini") is None
    write_gguf(models / "gpt-4o-mini.gguf", "llama")  # the operator's own model of that name
    assert catalog.find_alias(models, table, "gpt-4o-mini") is None
    assert "gpt-4o-mini" not in [m.id for m in catalog.base_models(tmp_path / "none")]


@pytest.mark.parametrize(("name", "base"), [
    ("ft:gpt-4o-mini-2024-07-18:org-local::abcd1234", "gpt-4o-mini-2024-07-18"),
    ("ft:SmolLM2-135M-Instruct:org-local:my-suffix:abcd1234", "SmolLM2-135M-Instruct"),
    ("ft:odd:name:org:sfx:abcd1234", "odd:name"),
    ("SmolLM2-135M-Instruct", None), ("ft:x:y", None), ("ft::org:sfx:abcd1234", None)])
def test_the_base_of_a_fine_tuned_name(name: str, base: str | None) -> None:
    assert base_name_of(name) == base
