"""tests/spec_once.py: connexion's check of an OpenAPI document runs once per distinct document,
and an invalid document is refused every time."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from connexion.exceptions import InvalidSpecification
from connexion.spec import Specification

from tests import spec_once


def document(title: str, *, valid: bool = True) -> dict[str, Any]:
    made: dict[str, Any] = {"openapi": "3.0.3", "info": {"title": title, "version": "1"}}
    if valid:
        made["paths"] = {}
    return made


def test_a_document_is_checked_once_and_an_invalid_one_every_time(
        monkeypatch: pytest.MonkeyPatch) -> None:
    checked: list[str] = []

    def spy(cls: type[Specification], spec: dict[str, Any]) -> None:
        checked.append(spec["info"]["title"])
        if "paths" not in spec:
            raise InvalidSpecification("'paths' is a required property")

    monkeypatch.setattr(Specification, "_validate_spec", classmethod(spy))
    a, b, bad = (f"{name}-{uuid.uuid4().hex}" for name in ("a", "b", "bad"))
    with spec_once.each_document_checked_once():
        for title in (a, a, b, a):
            Specification._validate_spec(document(title))
        for _ in range(2):
            with pytest.raises(InvalidSpecification):
                Specification._validate_spec(document(bad, valid=False))
    assert checked == [a, b, bad, bad]
    assert Specification.__dict__["_validate_spec"].__func__ is spy  # put back afterwards


def test_connexion_still_refuses_an_invalid_document() -> None:
    with spec_once.each_document_checked_once():
        Specification.from_dict(document(f"ok-{uuid.uuid4().hex}"))
        with pytest.raises(InvalidSpecification):
            Specification.from_dict(document(f"bad-{uuid.uuid4().hex}", valid=False))
