"""The ``sample`` a grader sees: the model's output in OpenAI's namespace."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Sample:
    output_text: str
    output_tools: list[dict[str, Any]] = field(default_factory=list)
    choices: list[dict[str, Any]] = field(default_factory=list)

    @property
    def output_json(self) -> Any:
        """The text parsed as JSON whenever it parses (OpenAI's spec and guide disagree on
        when it is filled; filling it whenever it can be is the reading that breaks nothing)."""
        try:
            return json.loads(self.output_text)
        except ValueError:
            return None

    def as_namespace(self) -> dict[str, Any]:
        return {"output_text": self.output_text, "output_json": self.output_json,
                "output_tools": self.output_tools, "choices": self.choices,
                "output_audio": None}
