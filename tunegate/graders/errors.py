"""The one error a grader's configuration raises: which field, and why."""

from __future__ import annotations


class InvalidGrader(ValueError):
    """A grader that cannot run as configured (unknown type, missing field, bad template path,
    formula syntax). ``param`` is the dotted path of the field, e.g. ``grader.graders.a.operation``,
    so the API's 400 names it."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(message)
        self.param = param
        self.message = message
