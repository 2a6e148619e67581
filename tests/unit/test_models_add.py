"""``tunegate models add PATH``: a base model checked (its architecture) and copied or linked
into the models folder, or a Hugging Face folder converted to a GGUF there, listed by the
catalog at once; refusals and failed conversions say why and add nothing."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.unit.test_architectures import write_gguf
from tunegate import cli
from tunegate.adapters import convert
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


def hf_folder(parent: Path, model_type: str = "llama", name: str = "hf") -> Path:
    folder = parent / name
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": model_type}))
    return folder


@pytest.fixture
def converter(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[str], Path]:
    """Install a stand-in for llama.cpp's convert_hf_to_gguf.py (the real one runs in
    tests/e2e/test_hf_folder_sdk.py): ``converter(body)`` writes a script whose ``body`` sees
    ``out`` (the --outfile path) and ``gguf_py`` (whether the vendored gguf-py is on
    PYTHONPATH); returns the folder it runs in."""
    def install(body: str) -> Path:
        script = tmp_path / "llama_cpp" / "convert" / convert.SCRIPT
        script.parent.mkdir(parents=True, exist_ok=True)
        script.write_text(textwrap.dedent("""\
            import os, pathlib, shutil, sys
            out = pathlib.Path(sys.argv[sys.argv.index("--outfile") + 1])
            assert sys.argv[sys.argv.index("--outtype") + 1] == "auto"
            gguf_py = os.environ["PYTHONPATH"].split(os.pathsep)[0]
            gguf_py = gguf_py == str(pathlib.Path(__file__).parent / "gguf-py")
            """) + textwrap.dedent(body))
        monkeypatch.setattr(convert, "converter_script", lambda: script)
        return script.parent
    return install


def test_a_folder_is_converted_to_a_gguf_under_its_name(
        tmp_path: Path, converter: Callable[[str], Path],
        capsys: pytest.CaptureFixture[str]) -> None:
    made = write_gguf(tmp_path / "made.gguf", "llama")
    converter(f"assert gguf_py\nprint('converting')\nshutil.copyfile({str(made)!r}, out)\n")
    models = tmp_path / "models"
    add(hf_folder(tmp_path), "--models-dir", models)
    out, err = capsys.readouterr()
    assert out == "hf\n" and "converting" in err and "converted to" in err
    assert [p.name for p in models.iterdir()] == ["hf.gguf"]  # the folder itself is not copied
    assert (models / "hf.gguf").read_bytes() == made.read_bytes()
    base = catalog.find_base_model(models, "hf")
    assert base is not None and base.kind == "gguf"


@pytest.mark.parametrize("body, says", [
    ("out.write_bytes(b'GGUF half')\nprint('ValueError: no weights', file=sys.stderr)\n"
     "sys.exit(1)\n", "failed on hf (exit status 1): ValueError: no weights"),
    ("shutil.copyfile(QWEN_GGUF, out)\n", "wrote a 'qwen2' GGUF of hf"),
    ("out.write_bytes(b'not a gguf')\n", "wrote no usable GGUF of hf"),
])
def test_a_failed_conversion_says_why_and_leaves_nothing(
        tmp_path: Path, converter: Callable[[str], Path], body: str, says: str) -> None:
    models = tmp_path / "models"
    models.mkdir()
    write_gguf(models / "kept.gguf", "llama")
    converter(body.replace("QWEN_GGUF", repr(str(write_gguf(tmp_path / "q.gguf", "qwen2")))))
    with pytest.raises(SystemExit) as refused:
        add(hf_folder(tmp_path), "--models-dir", models)
    assert str(refused.value).startswith("tunegate models add: llama.cpp's convert_hf_to_gguf")
    assert says in str(refused.value)
    assert [p.name for p in models.iterdir()] == ["kept.gguf"]  # no temporary, no half GGUF


def test_an_unsupported_folder_is_refused_before_converting(
        tmp_path: Path, converter: Callable[[str], Path]) -> None:
    ran = converter("pathlib.Path(__file__).with_name('ran').touch()\n") / "ran"
    with pytest.raises(SystemExit, match="model_type is 'mamba'"):
        add(hf_folder(tmp_path, "mamba"), "--models-dir", tmp_path / "models")
    with pytest.raises(SystemExit, match="cannot be linked"):
        add(hf_folder(tmp_path, name="linked"), "--models-dir", tmp_path / "models", "--link")
    assert not ran.exists() and not (tmp_path / "models").exists()


def test_a_missing_converter_names_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(convert.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(convert.ConversionFailed, match="run `make setup`"):
        convert.converter_script()


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


def test_a_models_folder_that_is_the_model_cache_lists_no_copy(tmp_path: Path) -> None:
    """The trainer's copy ``<name>@<dtype>/`` (and the single-copy ``<name>/`` of earlier
    versions) next to ``<name>.gguf`` is no base model: the GGUF stays the one listed, and
    served."""
    from tunegate.training.model_cache import cache_folder
    from tunegate.training.spec import BaseModelRef

    models = tmp_path / "models"
    models.mkdir()
    write_gguf(models / "my-llama.gguf", "llama")
    ref = BaseModelRef("my-llama", "gguf", str(models), "my-llama.gguf")
    for copy in (cache_folder(ref, models, "bfloat16"), models / "my-llama"):
        copy.mkdir()
        (copy / "config.json").write_text(json.dumps({"model_type": "llama"}))
        (copy / catalog.CACHE_MARKER).write_text("{}")
    listed = [m for m in catalog.base_models(models) if m.owned_by == "operator"]
    assert [(m.id, m.kind, m.path.name) for m in listed] == [("my-llama", "gguf", "my-llama.gguf")]
    # A hand-placed Hugging Face folder (no marker) is still a base model.
    hf_folder(models, name="by-hand")
    assert "by-hand" in [m.id for m in catalog.base_models(models)]


def test_a_folder_without_the_marker_never_shadows_the_gguf_of_its_name(tmp_path: Path) -> None:
    """A copy ``<name>/`` an earlier version wrote (no marker) in a models folder that was its
    model cache, or a folder placed by hand under a GGUF's name: the GGUF is the base model,
    so what is fine-tuned on it can be served (a folder base cannot: llama.cpp runs GGUF)."""
    models = tmp_path / "models"
    models.mkdir()
    write_gguf(models / "my-llama.gguf", "llama")
    hf_folder(models, name="my-llama")
    [found] = [m for m in catalog.base_models(models) if m.owned_by == "operator"]
    assert (found.id, found.kind, found.path.name) == ("my-llama", "gguf", "my-llama.gguf")
    assert catalog.find_base_model(models, "my-llama") == found
    assert catalog.refused_base_model(models, "my-llama") is None
    # Alone, the folder is a base model (it trains; it is not served).
    (models / "my-llama.gguf").unlink()
    assert catalog.find_base_model(models, "my-llama").kind == "hf"  # type: ignore[union-attr]
