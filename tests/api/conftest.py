"""Fixtures for the API with keys configured: two projects (in two organizations) and an admin.

``keyed_settings`` writes a keys file with the three keys of ``KEYS`` (hashes only) and switches
the request rate limit off (tests send bursts; the limit has its own tests).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from tunegate.api.app import create_app
from tunegate.api.keys import hash_key
from tunegate.settings import Settings


@dataclass(frozen=True)
class TestKey:
    __test__ = False  # not a test class, whatever pytest thinks of the name

    key: str
    project: str
    organization: str
    admin: bool = False

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


ALICE = TestKey("sk-tg-alice-0000000000000000000000000000", "proj-alice", "org-alice")
BOB = TestKey("sk-tg-bob-00000000000000000000000000000000", "proj-bob", "org-bob")
ADMIN = TestKey("sk-tg-admin-000000000000000000000000000000", "proj-ops", "org-ops", admin=True)
KEYS = (ALICE, BOB, ADMIN)


def write_keys_file(path: Path, keys: tuple[TestKey, ...] = KEYS) -> Path:
    path.write_text(json.dumps([
        {"name": key.project, "hash": hash_key(key.key), "project": key.project,
         "organization": key.organization, "admin": key.admin} for key in keys]))
    return path


@pytest.fixture
def keyed_settings(settings: Settings, tmp_path: Path) -> Settings:
    return replace(settings, keys_file=write_keys_file(tmp_path / "keys.json"), rate_limit=0)


@pytest.fixture
def keyed_app(keyed_settings: Settings) -> Any:
    return create_app(keyed_settings, validate_responses=True)


@pytest.fixture
def keyed_client(keyed_app: Any) -> Iterator[Any]:
    with keyed_app.test_client() as test_client:
        yield test_client
