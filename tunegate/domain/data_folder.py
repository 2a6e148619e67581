"""A data folder belongs to one database.

What lies in the data folder (uploaded files, job folders, models) is owned by rows of one
database, and the worker's janitor removes what no row of its database owns. A server started
on the same folder with another database (a changed ``TUNEGATE_DATABASE_URL``, a second
installation) would therefore delete the first one's files. So the folder records the identity
of its database (``store-id``, written on first use) and a process whose database has another
identity refuses to use the folder.
"""

from __future__ import annotations

import os
from pathlib import Path

MARKER = "store-id"


class ForeignDataFolder(Exception):
    """The data folder records another database than the one configured."""


def claim(data_dir: Path, store_identity: str) -> None:
    """Record ``store_identity`` in a folder that has none; refuse a folder recording another."""
    marker = data_dir / MARKER
    recorded = _read(marker)
    if recorded is None:
        _write_once(marker, store_identity)
        recorded = _read(marker)  # another process may have written it first
    if recorded != store_identity:
        raise ForeignDataFolder(
            f"the data folder {data_dir} belongs to another database (it records {recorded}; "
            f"the configured database is {store_identity}): its files would be swept as "
            "nobody's. Point TUNEGATE_DATABASE_URL at that folder's database, or "
            f"TUNEGATE_DATA at another folder (or remove {marker} if that database is gone "
            "for good)")


def _read(marker: Path) -> str | None:
    try:
        return marker.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None


def _write_once(marker: Path, identity: str) -> None:
    """Write the marker unless it exists, atomically: no reader ever sees a half-written id."""
    staged = marker.with_name(f".{MARKER}.{os.getpid()}")
    staged.write_text(identity + "\n", encoding="utf-8")
    try:
        os.link(staged, marker)  # fails if another process recorded its identity first
    except FileExistsError:
        pass
    finally:
        staged.unlink()
