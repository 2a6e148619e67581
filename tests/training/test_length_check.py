"""The worker's torch-free length check: the trainer's data loading with ``tokenizers`` and the
chat template on disk gives the trainer's examples, and its failures, exactly."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import FIXTURES, TEST_DATA
from tunegate.training.data import file_role, iter_examples, load_dataset
from tunegate.training.errors import TrainingFailed
from tunegate.training.length_check import FileTokenizer, check_lengths, file_tokenizer
from tunegate.training.preference import iter_pairs, load_preferences

from .conftest import CHATML, TOOL_TEMPLATE, build_tokenizer, chat, write_jsonl

pytest.importorskip("tokenizers")

PREFERENCES = TEST_DATA / "microsoft-foundry__orca_dpo_pairs__validation.jsonl"
REINFORCEMENT = sorted(TEST_DATA.glob("*rft*.jsonl"))
SUPERVISED = sorted({*TEST_DATA.glob("*.jsonl"), FIXTURES / "tool_calls.jsonl"}
                    - {PREFERENCES, *REINFORCEMENT})


@pytest.fixture(scope="module", params=[CHATML, TOOL_TEMPLATE], ids=["chatml", "tools"])
def tokenizers(request: pytest.FixtureRequest,
               tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, FileTokenizer]:
    """A transformers tokenizer and the FileTokenizer of the folder it saved itself to."""
    tokenizer = build_tokenizer(chat_template=request.param)
    folder = tmp_path_factory.mktemp("tokenizer")
    tokenizer.save_pretrained(folder)
    light = file_tokenizer(folder)
    assert light is not None
    return tokenizer, light


@pytest.mark.parametrize("path", SUPERVISED, ids=lambda p: p.name[:30])
@pytest.mark.model
def test_supervised_examples_are_the_trainers_exactly(tokenizers: tuple[Any, FileTokenizer],
                                                      path: Path) -> None:
    transformers_tokenizer, light = tokenizers
    role = file_role(False)
    expected = list(iter_examples(path, transformers_tokenizer, role))
    assert expected and list(iter_examples(path, light, role)) == expected


@pytest.mark.model
def test_preference_pairs_are_the_trainers_exactly(
        tokenizers: tuple[Any, FileTokenizer]) -> None:
    transformers_tokenizer, light = tokenizers
    role = file_role(False)
    expected = list(iter_pairs(PREFERENCES, transformers_tokenizer, role))
    assert expected and list(iter_pairs(PREFERENCES, light, role)) == expected


@pytest.mark.parametrize("path", REINFORCEMENT, ids=lambda p: p.name[:40])
@pytest.mark.model
def test_reinforcement_prompts_are_the_trainers_exactly(tokenizers: tuple[Any, FileTokenizer],
                                                        path: Path) -> None:
    from tunegate.training.rft_data import iter_prompts

    transformers_tokenizer, light = tokenizers
    role = file_role(False)
    expected = list(iter_prompts(path, transformers_tokenizer, role, {}))
    assert expected and list(iter_prompts(path, light, role, {})) == expected


def failure(function: Any, *args: Any, **kwargs: Any) -> tuple[str, str | None, str] | None:
    try:
        function(*args, **kwargs)
    except TrainingFailed as exc:
        return exc.code, exc.param, exc.message
    return None


@pytest.mark.parametrize("limit", [64, 256, 4096])
@pytest.mark.model
def test_check_lengths_fails_where_and_as_the_trainer_does(
        tokenizers: tuple[Any, FileTokenizer], limit: int) -> None:
    transformers_tokenizer, light = tokenizers
    failures = 0
    for path in [*SUPERVISED, PREFERENCES]:
        method, load = (("dpo", load_preferences) if path == PREFERENCES
                        else ("supervised", load_dataset))
        for validation in (False, True):
            trainer = failure(load, path, transformers_tokenizer, limit, validation=validation)
            worker = failure(check_lengths, path, light, limit, method=method,
                             validation=validation)
            assert worker == trainer, (path.name, validation)
            failures += trainer is not None
    if limit == 64:
        assert failures  # the comparison covers the failure too


@pytest.mark.model
def test_a_long_file_fails_naming_the_limit_the_line_and_its_length(
        tokenizers: tuple[Any, FileTokenizer], tmp_path: Path) -> None:
    _, light = tokenizers
    path = write_jsonl(tmp_path / "long.jsonl", [chat("word " * 100, "a"),
                                                 chat("word " * 200, "b")])
    longest = list(iter_examples(path, light, file_role(True)))[1].n_tokens
    with pytest.raises(TrainingFailed) as caught:
        check_lengths(path, light, 64, method="supervised", validation=True)
    assert (caught.value.code, caught.value.param) == ("invalid_validation_file",
                                                       "validation_file")
    assert "64 tokens (setting TUNEGATE_MAX_SEQ_LEN)" in caught.value.message
    assert f"The longest is line 2 ({longest} tokens)." in caught.value.message
    tally = check_lengths(path, light, 4096, method="supervised")
    assert (tally.n_examples, tally.n_truncated, tally.longest_line) == (2, 0, 2)


@pytest.mark.model
def test_no_file_tokenizer_where_it_might_not_be_exact(tmp_path: Path) -> None:
    """Anything but the generic tokenizer saved as transformers 5 saves it: the trainer checks."""
    assert file_tokenizer(None) is None
    assert file_tokenizer(tmp_path / "missing") is None

    def saved(name: str) -> Path:
        folder = tmp_path / name
        build_tokenizer().save_pretrained(folder)
        return folder

    assert file_tokenizer(saved("generic")) is not None
    (saved("no-json") / "tokenizer.json").unlink()
    assert file_tokenizer(tmp_path / "no-json") is None
    other = saved("other-class")
    config = json.loads((other / "tokenizer_config.json").read_text())
    (other / "tokenizer_config.json").write_text(
        json.dumps({**config, "tokenizer_class": "LlamaTokenizer"}))
    assert file_tokenizer(other) is None
    (saved("old-layout") / "special_tokens_map.json").write_text("{}")
    assert file_tokenizer(tmp_path / "old-layout") is None


@pytest.mark.model
def test_the_file_tokenizer_is_reloaded_when_its_files_change(tmp_path: Path) -> None:
    folder = tmp_path / "tok"
    build_tokenizer().save_pretrained(folder)
    first = file_tokenizer(folder)
    assert first is not None and file_tokenizer(folder) is first
    (folder / "chat_template.jinja").write_text("{{ messages[0]['content'] }}")
    second = file_tokenizer(folder)
    assert second is not first and second is not None
    assert second.chat_template == "{{ messages[0]['content'] }}"
