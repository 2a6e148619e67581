"""``tunegate models add PATH``: a base model checked (its architecture) and copied or linked
into the models folder, listed by the catalog at once; refusals say why and add nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.unit.test_architectures import write_gguf
from tunegate import cli
from tunegate.domain import catalog


def add(*args: str | Path) -> None:
    cli.main(["models", "add", *map(str, args)])


def test_a_gguf_is_copied_and_listed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = write_gguf(tmp_path / "my-qwen.gguf", "qwen2")
    models = tmp_path / "models"
    add(source, "--models-dir", models)
    out, err = capsys.readouterr()
    assert out == "my-qwen\n" and "Qwen2/2.5, copied to" in err
    assert (models / "my-qwen.gguf").read_bytes() == source.read_bytes()
    assert not (models / "my-qwen.gguf").is_symlink()
    assert "my-qwen" in [m.id for m in catalog.base_models(models)]
    assert [p.name for p in models.iterdir()] == ["my-qwen.gguf"]  # no temporary left


def test_a_folder_is_linked_under_another_name(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "hf"
    source.mkdir()
    (source / "config.json").write_text(json.dumps({"model_type": "gemma3_text"}))
    models = tmp_path / "models"
    add(source, "--models-dir", models, "--name", "gemma-local", "--link")
    assert capsys.readouterr().out == "gemma-local\n"
    assert (models / "gemma-local").resolve() == source.resolve()
    assert catalog.find_base_model(models, "gemma-local") is not None


@pytest.mark.parametrize("make, says", [
    (lambda d: write_gguf(d / "snake.gguf", "mamba"), "GGUF architecture is 'mamba'"),
    (lambda d: (d / "notes.txt").write_text("x") and d / "notes.txt", "neither a .gguf file"),
])
def test_refusals_say_why_and_add_nothing(tmp_path: Path, make, says: str) -> None:
    source = make(tmp_path)
    models = tmp_path / "models"
    with pytest.raises(SystemExit) as refused:
        add(source, "--models-dir", models)
    assert str(refused.value).startswith("tunegate models add: ") and says in str(refused.value)
    assert not models.exists() or not list(models.iterdir())


def test_an_existing_id_is_not_replaced(tmp_path: Path) -> None:
    models = tmp_path / "models"
    models.mkdir()
    write_gguf(models / "m.gguf", "llama")
    with pytest.raises(SystemExit, match="already there"):
        add(write_gguf(tmp_path / "m.gguf", "qwen3"), "--models-dir", models)
