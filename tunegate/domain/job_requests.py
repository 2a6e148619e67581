"""Turning a ``POST /fine_tuning/jobs`` body into the job's method and settings.

The spec (connexion) has already checked types and ranges; these are the rules JSON Schema
cannot say: which method, where hyperparameters may come from, and what "auto" stands in for.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import Any

from tunegate.domain.methods import DEFAULT_METHOD, Method
from tunegate.errors import InvalidRequest

MAX_METADATA_KEY = 64
MAX_SEED = 2_147_483_647


def method_from_request(body: Mapping[str, Any]) -> Method:
    """The job's ``method``, from ``method`` or the deprecated top-level ``hyperparameters``
    (every hyperparameter not given is "auto"), with a reinforcement job's ``grader`` and
    ``response_format``."""
    method = body.get("method") or {"type": DEFAULT_METHOD}
    method_type = method.get("type", DEFAULT_METHOD)
    options = method.get(method_type) or {}
    given = options.get("hyperparameters")
    legacy = body.get("hyperparameters")
    if legacy:
        if method_type != "supervised":
            raise InvalidRequest(
                "The deprecated top-level 'hyperparameters' applies to supervised jobs only; "
                f"put them in method.{method_type}.hyperparameters.",
                param="hyperparameters", code="misplaced_hyperparameters",
            )
        if given:
            raise InvalidRequest(
                "Give hyperparameters either in method.supervised.hyperparameters or in the "
                "deprecated top-level 'hyperparameters', not both.",
                param="hyperparameters", code="misplaced_hyperparameters",
            )
        given = legacy
    # A reinforcement job's grader is kept as sent; the API checks it with the graders' parser.
    return Method.of(method_type, given, options.get("grader"), options.get("response_format"))


def check_metadata(metadata: dict[str, str] | None) -> None:
    for key in metadata or {}:
        if len(key) > MAX_METADATA_KEY:
            raise InvalidRequest(
                f"Metadata keys are at most {MAX_METADATA_KEY} characters; "
                f"{key[:20]!r}… has {len(key)}.",
                param="metadata", code="metadata_key_too_long",
            )


def seed_for(body: Mapping[str, Any]) -> int:
    """The requested seed, or a fresh one (OpenAI generates one when none is given)."""
    seed = body.get("seed")
    return int(seed) if seed is not None else secrets.randbelow(MAX_SEED + 1)
