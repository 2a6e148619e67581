"""What a grader type's scorer gets besides its grader: the namespaces its templates read,
the models it may ask, the sandbox's limits, and how to grade a part (for ``multi``)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tunegate.graders.models import GraderModels
from tunegate.graders.sandbox import SandboxLimits

if TYPE_CHECKING:
    from tunegate.graders.grades import Grade
    from tunegate.graders.kinds import Grader


@dataclass(frozen=True)
class Context:
    namespaces: Mapping[str, Any]  # {"sample": ..., "item": ...}
    models: GraderModels | None
    limits: SandboxLimits
    grade_part: Callable[[Grader], Grade]

    @property
    def sample(self) -> Mapping[str, Any]:
        return self.namespaces["sample"]  # type: ignore[no-any-return]

    @property
    def item(self) -> Mapping[str, Any]:
        return self.namespaces["item"]  # type: ignore[no-any-return]
