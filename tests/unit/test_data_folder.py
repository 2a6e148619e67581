"""A data folder belongs to one database (tunegate.domain.data_folder): a server on another database
refuses the folder instead of sweeping its files as nobody's."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from tunegate.api.app import build_service
from tunegate.domain import data_folder
from tunegate.settings import Settings


def test_the_first_database_claims_the_folder_and_keeps_it(tmp_path: Path) -> None:
    data_folder.claim(tmp_path, "store-a")
    data_folder.claim(tmp_path, "store-a")  # the same database again: fine
    assert (tmp_path / data_folder.MARKER).read_text().strip() == "store-a"
    with pytest.raises(data_folder.ForeignDataFolder, match="belongs to another database"):
        data_folder.claim(tmp_path, "store-b")
    assert [p.name for p in tmp_path.iterdir()] == [data_folder.MARKER]  # nothing staged left


def test_each_database_has_its_own_identity_and_keeps_it(tmp_path: Path) -> None:
    first = build_service(Settings(data_dir=tmp_path / "one"))
    second = build_service(Settings(data_dir=tmp_path / "two"))
    try:
        assert first.store.identity() != second.store.identity()
        assert first.store.identity().startswith("store-")
    finally:
        first.store.close()
        second.store.close()
    again = build_service(Settings(data_dir=tmp_path / "one"))  # reopened: same identity
    again.store.close()


def test_a_service_on_another_database_refuses_the_folder(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    build_service(settings).store.close()
    other_database = f"sqlite:///{tmp_path / 'other.sqlite3'}"
    with pytest.raises(data_folder.ForeignDataFolder):
        build_service(replace(settings, database_url=other_database))


@pytest.mark.server
def test_serve_says_why_it_refuses_and_exits(tmp_path: Path) -> None:
    build_service(Settings(data_dir=tmp_path)).store.close()
    env = {**os.environ, "TUNEGATE_DATA": str(tmp_path),
           "TUNEGATE_DATABASE_URL": f"sqlite:///{tmp_path / 'other.sqlite3'}"}
    result = subprocess.run([sys.executable, "-m", "tunegate", "worker"], env=env, cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert "belongs to another database" in result.stderr
    assert "Traceback" not in result.stderr
