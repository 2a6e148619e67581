"""Hostile file names and ids: nothing a client sends becomes a path.

Uploads with crafted names (path separators, ``..``, NUL, control and bidi characters, very long,
any unicode) and requests with crafted ids (encoded separators, ``..``, NUL, very long) must get
a clean answer, a correct 200 or an enveloped 4xx, and must leave the data folder holding only
``files/<file-id>`` entries, with nothing written or removed outside it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import hypothesis
import pytest
from hypothesis import HealthCheck
from hypothesis import strategies as st

from tests.api.conftest import ALICE
from tests.conftest import chat_lines
from tests.helpers import post_file, upload
from tunegate.domain.files import MAX_FILENAME_BYTES, clean_filename
from tunegate.settings import Settings

HOSTILE_NAMES = [
    "../../outside.jsonl", "..\\..\\outside.jsonl", "/etc/passwd", "C:\\Windows\\win.ini",
    "a/b/../../../c.jsonl", "..", ".", "", " ", "x\x00y.jsonl", "line\nbreak.jsonl",
    "tab\tand\rreturn.jsonl", "\u202egnp.jsonl", "zero\u200bwidth.jsonl", "日本語.jsonl",
    "émoji-😀.jsonl", "a" * 5000 + ".jsonl", "é" * 400, "%2e%2e%2fescaped.jsonl",
    "quote\"and'.jsonl", "semi;colon=.jsonl", ".partial-file-x", "files", "tunegate.sqlite3",
]
HOSTILE_IDS = [
    "..", "%2e%2e", "..%2F..%2Foutside", "file-..%2F..%2Ftunegate.sqlite3", "%2Fetc%2Fpasswd",
    "file-%00", "%00", "file-" + "a" * 5000, "file-é", "file-😀", "file-..", ".partial-file-x",
    "..%5C..%5Coutside", "file-abc%0Adef", "tunegate.sqlite3",
]


def snapshot(root: Path) -> set[str]:
    return {str(path.relative_to(root)) for path in root.rglob("*")}


def assert_clean(response: Any) -> None:
    assert response.status_code == 200 or 400 <= response.status_code < 500, response.text
    if response.status_code >= 400:
        error = response.json()["error"]
        assert set(error) == {"message", "type", "param", "code"}
        assert "Traceback" not in response.text


def assert_safe_name(name: str) -> None:
    assert "/" not in name and "\\" not in name and name not in ("", ".", "..")
    assert not any(ord(char) < 32 or char == "\x7f" for char in name)
    assert len(name.encode()) <= MAX_FILENAME_BYTES


def check_upload(client: Any, files_dir: Path, name: str) -> None:
    response = post_file(client, name=name, headers=ALICE.headers)
    assert_clean(response)
    if response.status_code != 200:
        return
    stored = response.json()
    assert_safe_name(stored["filename"])
    assert os.listdir(files_dir).count(stored["id"]) == 1
    content = client.get(f"/v1/files/{stored['id']}/content", headers=ALICE.headers)
    assert content.content == chat_lines(12)
    disposition = content.headers["content-disposition"]
    assert unquote(disposition.split("''", 1)[1]) == stored["filename"]


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A file beside the data folder that a path escape would reach."""
    target = tmp_path / "outside.jsonl"
    target.write_text("do not touch")
    return target


def test_hostile_upload_names_stay_names(keyed_client: Any, keyed_settings: Settings,
                                         tmp_path: Path, outside: Path) -> None:
    data = keyed_settings.data_dir.name

    def outside_data() -> set[str]:
        return {path for path in snapshot(tmp_path) if path.split(os.sep)[0] != data}

    before = outside_data()
    for name in HOSTILE_NAMES:
        check_upload(keyed_client, keyed_settings.files_dir, name)
    assert outside_data() == before
    assert {p.name for p in keyed_settings.files_dir.iterdir()} == {
        f["id"] for f in keyed_client.get("/v1/files?limit=1000",
                                          headers=ALICE.headers).json()["data"]}
    assert outside.read_text() == "do not touch"


@hypothesis.settings(max_examples=60, derandomize=True, database=None, deadline=None,
                     suppress_health_check=[HealthCheck.function_scoped_fixture,
                                            HealthCheck.too_slow])
@hypothesis.given(name=st.text(min_size=0, max_size=300))
def test_any_upload_name_is_stored_clean(keyed_client: Any, keyed_settings: Settings,
                                         name: str) -> None:
    check_upload(keyed_client, keyed_settings.files_dir, name)


@hypothesis.given(name=st.text(max_size=600))
def test_clean_filename_always_gives_a_safe_name(name: str) -> None:
    assert_safe_name(clean_filename(name))


def test_readable_names_pass_unchanged() -> None:
    for name in ("train.jsonl", "日本語.jsonl", "my data (v2).jsonl", "émoji-😀.jsonl"):
        assert clean_filename(name) == name
    assert clean_filename("../../a/b.jsonl") == "b.jsonl"
    assert clean_filename("a" * 300 + ".jsonl").endswith("a.jsonl")


@pytest.mark.parametrize("bad_id", HOSTILE_IDS)
def test_hostile_ids_are_clean_4xx_and_touch_nothing(keyed_client: Any, keyed_settings: Settings,
                                                     tmp_path: Path, outside: Path,
                                                     bad_id: str) -> None:
    kept = upload(keyed_client, name="keep.jsonl", headers=ALICE.headers)
    before = snapshot(tmp_path)
    for method, path in (("GET", f"/v1/files/{bad_id}"), ("GET", f"/v1/files/{bad_id}/content"),
                         ("DELETE", f"/v1/files/{bad_id}"),
                         ("GET", f"/v1/fine_tuning/jobs/{bad_id}"),
                         ("POST", f"/v1/fine_tuning/jobs/{bad_id}/cancel"),
                         ("GET", f"/v1/fine_tuning/jobs/{bad_id}/events"),
                         ("GET", f"/v1/models/{bad_id}"), ("DELETE", f"/v1/models/{bad_id}"),
                         ("GET", f"/v1/models/{bad_id}/adapter")):
        response = keyed_client.request(method, path, headers=ALICE.headers)
        assert 400 <= response.status_code < 500, (method, path, response.status_code)
        assert_clean(response)
    assert snapshot(tmp_path) == before
    assert outside.read_text() == "do not touch"
    assert keyed_client.get(f"/v1/files/{kept}", headers=ALICE.headers).status_code == 200
