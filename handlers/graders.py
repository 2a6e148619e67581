"""/v1/fine_tuning/alpha/graders/…"""

from __future__ import annotations

from typing import Any

from handlers import service, visible

Response = tuple[dict[str, Any], int]


def run_grader(body: dict[str, Any]) -> Response:
    return service().graders.run(visible(), body), 200


def validate_grader(body: dict[str, Any]) -> Response:
    return service().graders.validate(visible(), body), 200
