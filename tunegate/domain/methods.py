"""A job's training method as one typed value: its type and that type's hyperparameters.

OpenAI's wire shape is ``{"type": T, T: {"hyperparameters": {...}}}``, each value a number or
``"auto"`` (what the API echoes until a worker has resolved it). Every method's hyperparameters
are declared once, as the fields of its dataclass below, each with its kind and bounds
(``hyperparameter(Integer(1, 50))``): parsing a request, the job's wire dict, the checks and the
trainer all read them from there. A method is one more dataclass and one more entry in
``METHODS``; the "auto" rules live with the trainer (:mod:`tunegate.training.hyperparams`).

A value is checked when it is built, so a ``Method`` that exists holds allowed values only: a
bad one fails where it enters (the API's request, the trainer's spec), before any work starts.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Protocol

from tunegate.errors import InvalidRequest

AUTO = "auto"
Auto = Literal["auto"]


class InvalidHyperparameter(InvalidRequest):
    """A hyperparameter the method does not take, or a value outside its bounds."""

    code = "invalid_hyperparameters"

    def __init__(self, name: str, message: str):
        super().__init__(message, param=f"hyperparameters.{name}")


class Kind(Protocol):
    """What values a hyperparameter takes (besides ``"auto"``)."""

    def problem(self, value: object) -> str | None:
        """Why ``value`` is not allowed ("must be ..."), or ``None`` when it is."""


@dataclass(frozen=True)
class Integer:
    """An integer from ``low`` to ``high`` (a bool is not one, though Python says it is)."""

    low: int
    high: int

    def problem(self, value: object) -> str | None:
        if isinstance(value, bool) or not isinstance(value, int) or \
                not self.low <= value <= self.high:
            return f"must be an integer from {self.low} to {self.high}"
        return None


@dataclass(frozen=True)
class Number:
    """A number in (``low``, ``high``]; ``high`` infinite means any number above ``low``."""

    high: float = math.inf
    low: float = 0.0

    def problem(self, value: object) -> str | None:
        if isinstance(value, bool) or not isinstance(value, int | float) or \
                not self.low < value <= self.high:
            return "must be a number " + (f"> {self.low:g}" if self.high == math.inf
                                          else f"in ({self.low:g}, {self.high:g}]")
        return None


@dataclass(frozen=True)
class Choice:
    """One of ``values``; ``"auto"`` is not one unless listed (OpenAI's ``reasoning_effort``
    has its own ``"default"`` instead)."""

    values: tuple[str, ...]

    def problem(self, value: object) -> str | None:
        if value not in self.values:
            return "must be one of " + ", ".join(repr(v) for v in self.values)
        return None


def hyperparameter(kind: Kind, default: object = AUTO) -> Any:
    """A hyperparameter field: ``default`` (``"auto"``) unless given, values checked against
    ``kind``."""
    return field(default=default, metadata={"kind": kind})


@dataclass(frozen=True)
class Hyperparameters:
    """The hyperparameters every method takes; the deprecated top-level ``hyperparameters`` of
    a job mirrors these. Subclasses add a method's own and name it in ``method``."""

    method: ClassVar[str]

    batch_size: int | Auto = hyperparameter(Integer(1, 256))
    learning_rate_multiplier: float | Auto = hyperparameter(Number())
    n_epochs: int | Auto = hyperparameter(Integer(1, 50))

    def __post_init__(self) -> None:
        for name, kind in _table(type(self)).items():
            value = getattr(self, name)
            problem = None if value == AUTO and not isinstance(kind, Choice) \
                else kind.problem(value)
            if problem is not None:
                raise InvalidHyperparameter(name, f"{name} {problem}, got {value!r}.")

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """The names this method takes, in wire order (alphabetical, as OpenAI lists them)."""
        return tuple(_table(cls))

    @classmethod
    def kinds(cls) -> dict[str, Kind]:
        return dict(_table(cls))

    @classmethod
    def from_wire(cls, given: Mapping[str, Any] | None) -> Hyperparameters:
        """Values as a request or a stored job gives them; missing or ``None`` is ``"auto"``."""
        values = {name: value for name, value in (given or {}).items() if value is not None}
        unknown = sorted(values.keys() - _table(cls).keys())
        if unknown:
            raise InvalidHyperparameter(unknown[0], f"{cls.method} fine-tuning has no "
                                        f"hyperparameter {unknown[0]!r}; it takes "
                                        f"{', '.join(cls.names())}.")
        return cls(**values)

    def to_wire(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in _table(type(self))}

    def shared_wire(self) -> dict[str, Any]:
        """The values every method takes: the job's deprecated top-level ``hyperparameters``."""
        return {name: getattr(self, name) for name in _table(Hyperparameters)}


_TABLES: dict[type[Hyperparameters], dict[str, Kind]] = {}


def _table(kind: type[Hyperparameters]) -> dict[str, Kind]:
    """``kind``'s hyperparameters by name, in wire order, read once from its fields (a job
    listing builds and serializes a method per job)."""
    table = _TABLES.get(kind)
    if table is None:
        fields = sorted(dataclasses.fields(kind), key=lambda item: item.name)
        table = _TABLES[kind] = {item.name: item.metadata["kind"] for item in fields}
    return table


@dataclass(frozen=True)
class SupervisedHyperparameters(Hyperparameters):
    method = "supervised"


@dataclass(frozen=True)
class DpoHyperparameters(Hyperparameters):
    method = "dpo"

    beta: float | Auto = hyperparameter(Number(2.0))


REASONING_EFFORTS = ("default", "low", "medium", "high")


@dataclass(frozen=True)
class ReinforcementHyperparameters(Hyperparameters):
    """Reinforcement fine-tuning's (OpenAI's names and ranges); what each means here is the
    trainer's business (:mod:`tunegate.training.hyperparams`)."""

    method = "reinforcement"

    compute_multiplier: float | Auto = hyperparameter(Number(10.0, low=1e-5))
    eval_interval: int | Auto = hyperparameter(Integer(1, 1_000_000))
    eval_samples: int | Auto = hyperparameter(Integer(1, 1_000_000))
    reasoning_effort: str = hyperparameter(Choice(REASONING_EFFORTS), default="default")


# Every method a job can be created with, by its wire name.
METHODS: dict[str, type[Hyperparameters]] = {
    kind.method: kind
    for kind in (SupervisedHyperparameters, DpoHyperparameters, ReinforcementHyperparameters)}
DEFAULT_METHOD = "supervised"
# Methods whose object carries a grader besides the hyperparameters.
GRADED_METHODS = frozenset({"reinforcement"})


@dataclass(frozen=True)
class Method:
    """A job's method; its type is that of its hyperparameters, so the two cannot disagree.

    A reinforcement method also carries its ``grader`` (OpenAI's grader object, as given: the
    grader room parses and checks it, :func:`tunegate.graders.parse_grader`; the domain only
    keeps it) and an optional ``response_format`` that OpenAI's examples echo.
    """

    hyperparameters: Hyperparameters = field(default_factory=SupervisedHyperparameters)
    grader: Mapping[str, Any] | None = field(default=None, hash=False)
    response_format: Mapping[str, Any] | None = field(default=None, hash=False)

    def __post_init__(self) -> None:
        if self.type in GRADED_METHODS and not self.grader:
            raise InvalidRequest(f"A {self.type} fine-tuning job needs a grader: give "
                                 f"method.{self.type}.grader.", param=f"method.{self.type}.grader",
                                 code="missing_grader")
        if self.type not in GRADED_METHODS and (self.grader or self.response_format):
            raise InvalidRequest(f"Only reinforcement fine-tuning takes a grader; a {self.type} "
                                 "job does not.", param=f"method.{self.type}",
                                 code="unexpected_grader")

    @property
    def type(self) -> str:
        return self.hyperparameters.method

    @classmethod
    def of(cls, method_type: str, hyperparameters: Mapping[str, Any] | None = None,
           grader: Mapping[str, Any] | None = None,
           response_format: Mapping[str, Any] | None = None) -> Method:
        """The method ``method_type`` with ``hyperparameters`` (the rest ``"auto"``)."""
        kind = METHODS.get(method_type)
        if kind is None:
            raise InvalidRequest(f"Unknown fine-tuning method {method_type!r}; use "
                                 f"{' or '.join(repr(name) for name in METHODS)}.",
                                 param="method.type", code="unsupported_method")
        return cls(kind.from_wire(hyperparameters), grader, response_format)

    @classmethod
    def from_wire(cls, wire: Mapping[str, Any]) -> Method:
        """Read :meth:`to_wire`'s shape (a stored job's ``method``, or a request's)."""
        method_type = wire["type"]
        body = wire.get(method_type) or {}
        return cls.of(method_type, body.get("hyperparameters"), body.get("grader"),
                      body.get("response_format"))

    def to_wire(self) -> dict[str, Any]:
        """OpenAI's ``method`` object, every hyperparameter present."""
        body: dict[str, Any] = {"hyperparameters": self.hyperparameters.to_wire()}
        if self.type in GRADED_METHODS:
            body = {"grader": dict(self.grader or {}), **body,
                    "response_format": None if self.response_format is None
                    else dict(self.response_format)}
        return {"type": self.type, self.type: body}

    def resolved(self, values: Mapping[str, Any]) -> Method:
        """This method with ``values`` (what "auto" became) in place; checked like any other
        (a name the method does not take included)."""
        kind = type(self.hyperparameters)
        return Method(kind.from_wire({**self.hyperparameters.to_wire(), **values}),
                      self.grader, self.response_format)
