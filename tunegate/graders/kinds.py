"""A checked grader, and the grader types there are."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

GRADER_TYPES = frozenset({"string_check", "text_similarity", "python", "score_model",
                          "label_model", "multi"})


@dataclass(frozen=True)
class Grader:
    """A checked grader: its ``type``, its ``name`` and the configuration as it was sent
    (``spec``, echoed back by the API). A ``multi`` grader also holds its parts, each under the
    variable name its formula uses, and the parsed formula."""

    type: str
    name: str
    spec: Mapping[str, Any]
    parts: tuple[tuple[str, Grader], ...] = field(default=(), compare=False)
    formula: Any = field(default=None, compare=False)
