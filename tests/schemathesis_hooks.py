"""schemathesis hooks for a run against a real tunegate server (``schemathesis.toml`` loads
this module): every generated request is rewritten by ``tests.contract_rules`` before it is
sent, so that schema-valid requests meet the rules JSON Schema cannot state.

The rules need two things from the server, read over HTTP with the run's own headers (an
``Authorization`` given with ``-H`` included): its base models (``GET /models``) and one
uploaded ``fine-tune`` file for the jobs to name (uploaded on first use, and again should the
run have deleted it), and a fresh one-part upload for each completion it sends. That file
holds a single example, so each job the run creates fails its validation at once and nothing
trains.
"""

from __future__ import annotations

from typing import Any

import httpx
import schemathesis

from tests.contract_rules import COMPLETABLE, acceptable, one_example


class Server:
    """What the rules need to know about the server at ``base_url``."""

    def __init__(self, base_url: str, headers: dict[str, str]) -> None:
        self.base_url = base_url
        self.headers = headers
        self._training_file: str | None = None
        self._base_models: list[str] | None = None

    def base_models(self) -> list[str]:
        if self._base_models is None:
            answer = httpx.get(f"{self.base_url}/models", headers=self.headers, timeout=30)
            answer.raise_for_status()
            self._base_models = [model["id"] for model in answer.json()["data"]
                                 if not model["id"].startswith("ft:")]
        return self._base_models

    def training_file(self) -> str:
        known = self._training_file
        if known is not None and httpx.get(f"{self.base_url}/files/{known}", headers=self.headers,
                                           timeout=30).status_code == 200:
            return known
        answer = httpx.post(f"{self.base_url}/files", headers=self.headers, timeout=30,
                            data={"purpose": "fine-tune"},
                            files={"file": ("schemathesis.jsonl", one_example())})
        answer.raise_for_status()
        self._training_file = str(answer.json()["id"])
        return self._training_file


    def completable_upload(self) -> tuple[str, list[str]]:
        """A fresh pending upload whose one part makes it whole: (its id, its part ids)."""
        answer = httpx.post(f"{self.base_url}/uploads", headers=self.headers, timeout=30,
                            json={"filename": "part.jsonl", "purpose": "batch",
                                  "bytes": len(COMPLETABLE), "mime_type": "text/jsonl"})
        answer.raise_for_status()
        upload_id = str(answer.json()["id"])
        part = httpx.post(f"{self.base_url}/uploads/{upload_id}/parts", headers=self.headers,
                          timeout=30, files={"data": ("part", COMPLETABLE)})
        part.raise_for_status()
        return upload_id, [str(part.json()["id"])]


_SERVERS: dict[str, Server] = {}


def _server(case: Any) -> Server:
    schema = case.operation.schema
    base_url = schema.get_base_url()
    if base_url not in _SERVERS:
        headers = dict(schema.config.headers_for(operation=case.operation))
        _SERVERS[base_url] = Server(base_url, headers)
    return _SERVERS[base_url]


@schemathesis.hook
def before_call(context: Any, case: Any, kwargs: dict[str, Any]) -> None:
    if case.operation.app is not None or "app" in kwargs:
        # An in-process app (tests/api/test_schemathesis.py, where schemathesis' pytest plugin
        # reads schemathesis.toml too): that test applies the rules itself, with its own server.
        return
    server = _server(case)
    acceptable(case, training_file=server.training_file, base_models=server.base_models(),
               training_content=one_example(), completable_upload=server.completable_upload)
