"""``multi``'s ``calculate_output``: a small arithmetic language, parsed here, never ``eval``'d.

Numbers, variables (the sub-graders' names), ``+ - * / ^`` (``^`` is a power, right-associative,
binding tighter than a unary minus on its left: ``-2^2`` is -4), parentheses, and the functions
OpenAI lists: ``min``, ``max`` (one or more arguments), ``abs``, ``floor``, ``ceil``, ``exp``,
``sqrt``, ``log`` (natural; one argument each).

``parse`` turns the text into a tree at create time (``FormulaError`` says where it is wrong);
``evaluate`` computes a tree for given variables (``MathError`` for a division by zero, the root
or log of a negative number, an overflow).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

FUNCTIONS: dict[str, tuple[Callable[..., float], int | None]] = {
    "min": (lambda *values: min(values), None), "max": (lambda *values: max(values), None),
    "abs": (abs, 1), "floor": (math.floor, 1),
    "ceil": (math.ceil, 1), "exp": (math.exp, 1), "sqrt": (math.sqrt, 1), "log": (math.log, 1),
}
_TOKEN = re.compile(r"\s*(?:(\d+\.?\d*(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?)"
                    r"|([A-Za-z_][A-Za-z0-9_]*)|(\*\*|[-+*/^(),]))")
MAX_LENGTH = 4096


class FormulaError(ValueError):
    """``calculate_output`` is not a formula this language reads."""


class MathError(ArithmeticError):
    """The formula has no value for these scores (division by zero, sqrt(-1)...)."""


@dataclass(frozen=True)
class Number:
    value: float


@dataclass(frozen=True)
class Variable:
    name: str


@dataclass(frozen=True)
class Call:
    function: str
    arguments: tuple[Node, ...]


@dataclass(frozen=True)
class Operation:
    operator: str  # + - * / ^, or "neg" for a unary minus
    operands: tuple[Node, ...]


Node = Number | Variable | Call | Operation


def parse(text: str) -> Node:
    if not isinstance(text, str) or not text.strip():
        raise FormulaError("the formula is empty")
    if len(text) > MAX_LENGTH:
        raise FormulaError(f"the formula is longer than {MAX_LENGTH} characters")
    parser = _Parser(_tokens(text))
    try:
        tree = parser.expression()
    except RecursionError:
        raise FormulaError("the formula nests too deeply") from None
    if parser.peek() is not None:
        raise FormulaError(f"unexpected {parser.peek()!r} after a complete formula")
    return tree


def variables(tree: Node) -> set[str]:
    if isinstance(tree, Variable):
        return {tree.name}
    if isinstance(tree, Call):
        return set().union(*(variables(argument) for argument in tree.arguments))
    if isinstance(tree, Operation):
        return set().union(*(variables(operand) for operand in tree.operands))
    return set()


def evaluate(tree: Node, values: Mapping[str, float]) -> float:
    try:
        result = _value(tree, values)
    except (ZeroDivisionError, OverflowError, ValueError) as failure:
        raise MathError(str(failure)) from failure
    if math.isnan(result) or math.isinf(result):
        raise MathError(f"the formula's value is {result}")
    return result


def _value(tree: Node, values: Mapping[str, float]) -> float:
    if isinstance(tree, Number):
        return tree.value
    if isinstance(tree, Variable):
        return float(values[tree.name])
    if isinstance(tree, Call):
        function, _ = FUNCTIONS[tree.function]
        return float(function(*(_value(argument, values) for argument in tree.arguments)))
    operands = [_value(operand, values) for operand in tree.operands]
    if tree.operator == "neg":
        return -operands[0]
    left, right = operands
    if tree.operator == "+":
        return left + right
    if tree.operator == "-":
        return left - right
    if tree.operator == "*":
        return left * right
    if tree.operator == "/":
        return left / right
    power = left ** right
    if isinstance(power, complex):
        raise ValueError(f"{left} ^ {right} is not a real number")
    return float(power)


def _tokens(text: str) -> list[str]:
    found, position = [], 0
    while position < len(text):
        if text[position:].strip() == "":
            break
        match = _TOKEN.match(text, position)
        if match is None:
            at = len(text) - len(text[position:].lstrip())
            raise FormulaError(f"unexpected character {text[at]!r} at position {at}")
        token = match.group(0).strip()
        found.append("^" if token == "**" else token)
        position = match.end()
    return found


class _Parser:
    """Recursive descent: expression := term (+|- term)*; term := unary (*|/ unary)*;
    unary := (-|+) unary | power; power := atom (^ unary)?"""

    def __init__(self, tokens: list[str]):
        self.tokens = tokens
        self.position = 0

    def peek(self) -> str | None:
        return self.tokens[self.position] if self.position < len(self.tokens) else None

    def take(self) -> str:
        token = self.peek()
        if token is None:
            raise FormulaError("the formula ends too early")
        self.position += 1
        return token

    def expect(self, token: str) -> None:
        found = self.peek()
        if found != token:
            raise FormulaError(f"expected {token!r}, found "
                               f"{'the end' if found is None else repr(found)}")
        self.position += 1

    def expression(self) -> Node:
        tree = self.term()
        while self.peek() in ("+", "-"):
            tree = Operation(self.take(), (tree, self.term()))
        return tree

    def term(self) -> Node:
        tree = self.unary()
        while self.peek() in ("*", "/"):
            tree = Operation(self.take(), (tree, self.unary()))
        return tree

    def unary(self) -> Node:
        if self.peek() == "-":
            self.take()
            return Operation("neg", (self.unary(),))
        if self.peek() == "+":
            self.take()
            return self.unary()
        return self.power()

    def power(self) -> Node:
        base = self.atom()
        if self.peek() == "^":
            self.take()
            return Operation("^", (base, self.unary()))
        return base

    def atom(self) -> Node:
        token = self.take()
        if token == "(":
            inner = self.expression()
            self.expect(")")
            return inner
        if token[0].isdigit() or token[0] == ".":
            return Number(float(token))
        if token[0].isalpha() or token[0] == "_":
            if self.peek() == "(":
                return self.call(token)
            return Variable(token)
        raise FormulaError(f"unexpected {token!r}")

    def call(self, name: str) -> Node:
        if name not in FUNCTIONS:
            raise FormulaError(f"unknown function {name!r}; the functions are "
                               f"{', '.join(FUNCTIONS)}")
        self.expect("(")
        arguments = [self.expression()]
        while self.peek() == ",":
            self.take()
            arguments.append(self.expression())
        self.expect(")")
        _, arity = FUNCTIONS[name]
        if arity is not None and len(arguments) != arity:
            raise FormulaError(f"{name} takes {arity} argument, not {len(arguments)}")
        return Call(name, tuple(arguments))
