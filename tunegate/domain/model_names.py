"""What a model name means: a base model, an alias standing for one, or a fine-tuned model or
checkpoint (with the base it was trained from). One resolver for job creation, serving and the
worker; each turns what it finds into its own answer (a 400 with its own code, a failed job)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tunegate.domain.catalog import Alias, BaseModel, find_alias, find_base_model
from tunegate.domain.models import FineTunedModel
from tunegate.settings import Aliases


@dataclass(frozen=True)
class ResolvedName:
    """``base`` is what runs or trains: the base itself, the one an alias stands for, or a
    fine-tuned model's base; ``None`` when that base is missing (or the name means nothing)."""

    name: str
    base: BaseModel | None
    alias: Alias | None = None
    tuned: FineTunedModel | None = None

    @property
    def is_base(self) -> bool:
        return self.base is not None and self.alias is None and self.tuned is None

    @property
    def known(self) -> bool:
        """The name means something here, whether or not its base is there."""
        return self.base is not None or self.alias is not None or self.tuned is not None


def resolve_name(models_dir: Path, aliases: Aliases, name: str,
                 find_tuned: Callable[[str], FineTunedModel | None]) -> ResolvedName:
    """A base model's id wins over an alias of the same name, an alias over a fine-tuned model
    (``find_tuned`` looks one up where the caller may see it: its project, or shared with it)."""
    base = find_base_model(models_dir, name)
    if base is not None:
        return ResolvedName(name, base)
    alias = find_alias(models_dir, aliases, name)
    if alias is not None:
        return ResolvedName(name, alias.base, alias=alias)
    tuned = find_tuned(name)
    if tuned is not None:
        return ResolvedName(name, find_base_model(models_dir, tuned.base_model), tuned=tuned)
    return ResolvedName(name, None)
