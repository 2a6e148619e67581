"""connexion checks the whole OpenAPI document against the OpenAPI 3.0 schema (defaults
included) every time an app is built: ~0.2 s on 2 quiet cores and ~0.6 s under load, two
thirds of ``create_app``. The tests build some 600 apps from the same few documents (the open
and the keyed contract), so the session checks each distinct document once and lets later apps
built from an identical one skip the check.

Nothing goes unchecked: a document is skipped only when the same content passed the real check
earlier in this process, and every ``tunegate serve`` process the tests start checks its own.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from connexion.spec import Specification

_passed: set[str] = set()


def _fingerprint(spec: dict[str, Any]) -> str:
    # ~5 ms for tunegate's contract, against the ~200 ms check it stands for.
    return hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()


@contextmanager
def each_document_checked_once() -> Iterator[None]:
    """While it lasts, connexion's spec check runs once per distinct document."""
    original = Specification.__dict__["_validate_spec"]

    def check_once(cls: type[Specification], spec: dict[str, Any]) -> None:
        fingerprint = _fingerprint(spec)
        if fingerprint in _passed:
            return
        original.__func__(cls, spec)  # raises on an invalid document: nothing is remembered
        _passed.add(fingerprint)

    Specification._validate_spec = classmethod(check_once)  # type: ignore[method-assign,assignment]
    try:
        yield
    finally:
        Specification._validate_spec = original  # type: ignore[method-assign]
