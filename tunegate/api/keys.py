"""API keys: who is calling, and which project and organization they act for.

Keys are stored only as SHA-256 hashes. A key is 32 random bytes, so a fast hash is enough
(nobody can guess their way back to it); a slow password hash would only cost every request.

The keys file (``TUNEGATE_KEYS_FILE``) is JSON, a list of entries::

    [{"name": "ci", "hash": "sha256:9f86d0…", "project": "proj-a", "organization": "org-a",
      "admin": false}]

``project`` is required; ``organization`` defaults to the settings' organization, ``admin`` to
false, ``name`` to the project. ``tunegate keys add`` appends an entry and prints the key once.
``TUNEGATE_API_KEY`` adds one more key, hashed in memory, for the default project.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tunegate.settings import Settings

KEY_PREFIX = "sk-tg-"
HASH_PREFIX = "sha256:"
BEARER = "bearer "


@dataclass(frozen=True)
class Caller:
    """Whom a request acts for. ``admin`` callers read every project's objects."""

    project_id: str
    organization_id: str
    admin: bool = False
    key_hash: str | None = None  # None: the open mode; else what the request rate is counted by

    @property
    def visible_project(self) -> str | None:
        """The project filter of reads: None (every project) for an admin."""
        return None if self.admin else self.project_id


@dataclass(frozen=True)
class KeyEntry:
    hash: str
    project: str
    organization: str
    admin: bool = False
    name: str = ""


def hash_key(key: str) -> str:
    return HASH_PREFIX + hashlib.sha256(key.encode()).hexdigest()


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def _entry(raw: Any, default_organization: str, where: str) -> KeyEntry:
    if not isinstance(raw, dict) or not isinstance(raw.get("project"), str) or not raw["project"]:
        raise ValueError(f"{where}: each key needs a non-empty string 'project'")
    digest = raw.get("hash")
    if not isinstance(digest, str) or not digest.startswith(HASH_PREFIX):
        raise ValueError(f"{where}: 'hash' must be 'sha256:<hex>' (never the key itself)")
    return KeyEntry(hash=digest, project=raw["project"],
                    organization=str(raw.get("organization") or default_organization),
                    admin=raw.get("admin") is True, name=str(raw.get("name") or raw["project"]))


def read_keys_file(path: Path, default_organization: str) -> list[KeyEntry]:
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(entries, list):
        raise ValueError(f"{path}: expected a JSON list of key entries")
    return [_entry(raw, default_organization, f"{path} entry {index}")
            for index, raw in enumerate(entries)]


class KeyRing:
    """The accepted keys. Empty means the API is open."""

    def __init__(self, entries: list[KeyEntry]):
        self.entries = entries

    @classmethod
    def from_settings(cls, settings: Settings) -> KeyRing:
        entries = []
        if settings.keys_file is not None:
            entries += read_keys_file(settings.keys_file, settings.organization_id)
        if settings.api_key:
            entries.append(KeyEntry(hash_key(settings.api_key), settings.project_id,
                                    settings.organization_id, name="TUNEGATE_API_KEY"))
        return cls(entries)

    @property
    def enabled(self) -> bool:
        return bool(self.entries)

    def caller(self, authorization: str | None) -> Caller | None:
        """The caller an ``Authorization: Bearer <key>`` header names, or None if it names none.

        Every entry is compared, in constant time, so the answer's timing says nothing about
        which or how many hashes share a prefix with the one presented.
        """
        if not authorization or authorization[:len(BEARER)].lower() != BEARER:
            return None
        presented = hash_key(authorization[len(BEARER):].strip())
        found = None
        for entry in self.entries:
            if hmac.compare_digest(entry.hash, presented):
                found = entry
        if found is None:
            return None
        return Caller(found.project, found.organization, found.admin, found.hash)


def add_key(path: Path, *, project: str, organization: str, admin: bool = False,
            name: str | None = None) -> str:
    """Append a new key's entry to the keys file (created if absent) and return the key."""
    key = new_key()
    entries = json.loads(path.read_text(encoding="utf-8")) if path.exists() else []
    entries.append(asdict(KeyEntry(hash_key(key), project, organization, admin, name or project)))
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(json.dumps(entries, indent=2) + "\n", encoding="utf-8")
    os.chmod(partial, 0o600)
    os.replace(partial, path)
    return key
