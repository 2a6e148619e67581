"""The ``python`` grader: the user's ``grade(sample, item)`` run in the sandbox, its failures
reported OpenAI's way (a runtime error with details, score 0)."""

from __future__ import annotations

import ast

from tunegate.graders import sandbox
from tunegate.graders.context import Context
from tunegate.graders.errors import InvalidGrader
from tunegate.graders.grades import Grade, failure
from tunegate.graders.kinds import Grader

MAX_SOURCE_BYTES = 256 * 1024


def check_source(source: object, where: str) -> None:
    """At create time: a string of at most 256 kB that compiles and defines ``grade`` at its
    top level (compiled, never run)."""
    if not isinstance(source, str):
        raise InvalidGrader(where, f"{where} must be a string of Python source")
    size = len(source.encode("utf-8"))
    if size > MAX_SOURCE_BYTES:
        raise InvalidGrader(where, f"{where} is {size} bytes; a Python grader's source is "
                                   f"at most {MAX_SOURCE_BYTES} bytes (256 kB)")
    try:
        tree = ast.parse(source, filename="grader.py")
    except (SyntaxError, ValueError) as problem:
        raise InvalidGrader(where, f"{where} does not compile: {problem}") from None
    if "grade" not in _top_level_names(tree):
        raise InvalidGrader(where, f"{where} must define a function grade(sample, item) at "
                                   "its top level")


def _top_level_names(tree: ast.Module) -> set[str]:
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(target.id for target in node.targets if isinstance(target, ast.Name))
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update(alias.asname or alias.name for alias in node.names)
    return names


def python(grader: Grader, context: Context) -> Grade:
    outcome = sandbox.run(grader.spec["source"], dict(context.sample), dict(context.item),
                          context.limits)
    if outcome.server:
        return failure("python_grader_server_error",
                       ("python_grader_server_error_type", f"{outcome.server}: {outcome.details}"))
    if outcome.score is None:
        return failure("python_grader_runtime_error",
                       ("python_grader_runtime_error_details", outcome.details or outcome.error
                        or "no score"))
    return Grade(score=outcome.score)
