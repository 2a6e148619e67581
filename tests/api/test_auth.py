"""API keys: 401 in OpenAI's envelope, what stays public, the keys file and CLI, the open mode's
bind warning, security headers, and no secret or stack trace in answers or logs."""

from __future__ import annotations

import json
import logging
import stat
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from tests.api.conftest import ALICE, BOB
from tests.helpers import create_job, upload
from tunegate import cli
from tunegate.api.app import create_app
from tunegate.api.keys import HASH_PREFIX, KEY_PREFIX, KeyRing, hash_key, read_keys_file
from tunegate.api.middleware import GATEWAY_DETAIL
from tunegate.settings import Settings

REFUSED_AUTHORIZATIONS = [
    None,
    "",
    "Bearer",
    "Bearer ",
    "Bearer sk-tg-not-a-key",
    f"Basic {ALICE.key}",
    f"Bearer {ALICE.key}x",
    f"Bearer {hash_key(ALICE.key)}",  # the stored hash is not a key
    ALICE.key,
]


def assert_401(response: Any) -> None:
    assert response.status_code == 401, response.text
    assert response.json() == {"error": {
        "message": response.json()["error"]["message"], "type": "invalid_request_error",
        "param": None, "code": "invalid_api_key"}}
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.headers["x-request-id"].startswith("req_")


@pytest.mark.parametrize("authorization", REFUSED_AUTHORIZATIONS)
def test_missing_or_wrong_key_is_401_invalid_api_key(keyed_client: Any,
                                                     authorization: str | None) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    for method, path in (("GET", "/v1/models"), ("GET", "/v1/files"),
                         ("POST", "/v1/fine_tuning/jobs"), ("GET", "/v1/no-such-route"),
                         ("DELETE", "/v1/models/x")):
        assert_401(keyed_client.request(method, path, headers=headers))


def test_the_right_key_in_any_case_of_bearer_is_accepted(keyed_client: Any) -> None:
    for scheme in ("Bearer", "bearer", "BEARER"):
        response = keyed_client.get("/v1/models", headers={"Authorization": f"{scheme} {ALICE.key}"})
        assert response.status_code == 200


def test_the_contract_and_swagger_ui_need_no_key(keyed_client: Any) -> None:
    for path in ("/v1/openapi.json", "/v1/openapi.yaml", "/v1/docs/"):
        assert keyed_client.get(path).status_code == 200, path
    spec = keyed_client.get("/v1/openapi.json").json()
    assert spec["security"] == [{"bearerAuth": []}]
    assert spec["components"]["securitySchemes"]["bearerAuth"] == {
        **spec["components"]["securitySchemes"]["bearerAuth"], "type": "http", "scheme": "bearer"}
    # Every operation can answer 401 and 429 (keys and their request rate).
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if method not in ("get", "post", "delete", "put", "patch"):
                continue
            assert {"401", "429"} <= set(operation["responses"]), (method, path)


def test_unknown_routes_are_401_before_404(keyed_client: Any) -> None:
    assert_401(keyed_client.get("/v1/secret-admin-panel"))
    assert keyed_client.get("/v1/secret-admin-panel", headers=ALICE.headers).status_code == 404


def test_gateway_mode_checks_the_key_first_then_answers_its_501(keyed_settings: Settings) -> None:
    app = create_app(replace(keyed_settings, fine_tuning=False), validate_responses=True)
    with app.test_client() as client:
        assert_401(client.get("/v1/fine_tuning/jobs"))
        response = client.get("/v1/fine_tuning/jobs", headers=ALICE.headers)
        assert response.status_code == 501
        assert response.json() == {"detail": GATEWAY_DETAIL}
        assert client.get("/v1/files", headers=ALICE.headers).status_code == 200


def test_with_no_keys_the_api_is_open(client: Any) -> None:
    assert client.get("/v1/models").status_code == 200
    assert client.get("/v1/models", headers={"Authorization": "Bearer anything"}).status_code == 200


def test_the_environment_key_acts_for_the_default_project(settings: Settings) -> None:
    keyed = Settings.from_env({"TUNEGATE_API_KEY": "sk-tg-from-env", "TUNEGATE_DATA":
                               str(settings.data_dir)})
    assert "sk-tg-from-env" not in repr(keyed)
    with create_app(replace(settings, api_key=keyed.api_key)).test_client() as client:
        assert_401(client.get("/v1/files"))
        headers = {"Authorization": "Bearer sk-tg-from-env"}
        uploaded = upload(client, headers=headers)
        job = create_job(client, uploaded, headers=headers)
        assert job["organization_id"] == settings.organization_id
    assert client.app.state_service.store.get_file(settings.project_id, uploaded)


def test_keys_add_prints_the_key_once_and_stores_its_hash(tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    keys_file = tmp_path / "keys.json"
    cli.main(["keys", "add", "--keys-file", str(keys_file), "--project", "p1", "--org", "o1"])
    first = capsys.readouterr().out.strip()
    cli.main(["keys", "add", "--keys-file", str(keys_file), "--project", "ops", "--admin"])
    second = capsys.readouterr().out.strip()
    assert first.startswith(KEY_PREFIX) and second.startswith(KEY_PREFIX) and first != second
    text = keys_file.read_text()
    assert first not in text and second not in text
    assert stat.S_IMODE(keys_file.stat().st_mode) == 0o600
    entries = read_keys_file(keys_file, "org-local")
    assert [(e.project, e.organization, e.admin) for e in entries] == [
        ("p1", "o1", False), ("ops", "org-local", True)]
    ring = KeyRing(entries)
    caller = ring.caller(f"Bearer {first}")
    assert caller is not None and (caller.project_id, caller.visible_project) == ("p1", "p1")
    admin = ring.caller(f"Bearer {second}")
    assert admin is not None and admin.admin and admin.visible_project is None


@pytest.mark.parametrize("content", [
    '{"hash": "sha256:00", "project": "p"}',  # not a list
    '[{"hash": "sk-tg-plain-key", "project": "p"}]',  # a key where its hash belongs
    f'[{{"hash": "{HASH_PREFIX}00"}}]',  # no project
    "not json",
])
def test_a_bad_keys_file_stops_the_server_from_starting(tmp_path: Path, settings: Settings,
                                                        content: str) -> None:
    keys_file = tmp_path / "bad-keys.json"
    keys_file.write_text(content)
    with pytest.raises(ValueError):
        create_app(replace(settings, keys_file=keys_file))


def test_serve_names_a_missing_or_broken_keys_file(tmp_path: Path, settings: Settings) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text("[{")
    for keys_file, why in ((tmp_path / "absent.json", "No such file"), (broken, "not valid JSON")):
        with pytest.raises(SystemExit) as stopped:
            cli.serve(replace(settings, keys_file=keys_file))
        assert "cannot read the API keys" in str(stopped.value), stopped.value
        assert why in str(stopped.value) and str(keys_file) in str(stopped.value)


@pytest.mark.parametrize(("host", "keys", "warns"), [
    ("127.0.0.1", False, False), ("localhost", False, False), ("::1", False, False),
    ("0.0.0.0", False, True), ("::", False, True), ("192.168.1.5", False, True),
    ("tunegate.example", False, True), ("0.0.0.0", True, False),
])
def test_serve_warns_when_it_listens_beyond_loopback_without_keys(host: str, keys: bool,
                                                                  warns: bool) -> None:
    warning = cli.open_bind_warning(Settings(host=host), keys)
    assert (warning is not None) == warns
    if warning:
        assert host in warning and "TUNEGATE_KEYS_FILE" in warning


def test_serve_binds_loopback_by_default() -> None:
    assert Settings.from_env({}).host == "127.0.0.1"


def test_security_headers_on_every_answer(keyed_client: Any) -> None:
    answers = {
        "ok": keyed_client.get("/v1/models", headers=ALICE.headers),
        "401": keyed_client.get("/v1/models"),
        "404": keyed_client.get("/v1/files/file-nope", headers=ALICE.headers),
        "docs": keyed_client.get("/v1/docs/"),
        "spec": keyed_client.get("/v1/openapi.json"),
    }
    for name, response in answers.items():
        headers = response.headers
        assert headers["x-content-type-options"] == "nosniff", name
        assert headers["referrer-policy"] == "no-referrer", name
        assert headers["x-frame-options"] == "DENY", name
        assert "frame-ancestors 'none'" in headers["content-security-policy"], name
    for name in ("ok", "401", "404", "spec"):
        assert answers[name].headers["cache-control"] == "no-store", name
        assert answers[name].headers["content-security-policy"].startswith("default-src 'none'")
    # Swagger UI's page runs its own inline script: its policy allows exactly that.
    docs_policy = answers["docs"].headers["content-security-policy"]
    assert "script-src 'self' 'unsafe-inline'" in docs_policy
    assert "<script" in answers["docs"].text


def test_keys_never_reach_the_log(keyed_client: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    keyed_client.get("/v1/models", headers=ALICE.headers)
    keyed_client.get("/v1/models", headers={"Authorization": "Bearer sk-tg-guess"})
    keyed_client.get("/v1/files/file-nope", headers=BOB.headers)
    logged = "\n".join(record.getMessage() for record in caplog.records)
    for secret in (ALICE.key, BOB.key, "sk-tg-guess"):
        assert secret not in logged


def test_a_failure_answers_without_a_trace(keyed_app: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    def explode(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("internal detail /srv/secret/path")

    monkeypatch.setattr(keyed_app.state_service.files, "list", explode)
    with keyed_app.test_client(raise_server_exceptions=False) as client:
        response = client.get("/v1/files", headers=ALICE.headers)
    assert response.status_code == 500
    assert response.json()["error"]["message"] == (
        "The server had an error while processing your request.")
    assert "secret" not in response.text and "Traceback" not in response.text
    assert json.loads(response.text)["error"]["type"] == "server_error"


def test_serve_prints_the_warning(settings: Settings, monkeypatch: pytest.MonkeyPatch,
                                  caplog: pytest.LogCaptureFixture) -> None:
    bound: list[str] = []
    monkeypatch.setattr(cli.StopsWorkerFirst, "run",
                        lambda self, sockets=None: bound.append(self.config.host))
    open_everywhere = replace(settings, host="0.0.0.0", embedded_worker=False)
    with caplog.at_level(logging.WARNING, logger="tunegate"):
        cli.serve(open_everywhere)
        assert bound == ["0.0.0.0"] and "no API keys" in caplog.text
        caplog.clear()
        cli.serve(replace(open_everywhere, api_key="sk-tg-some-key"))
        assert "no API keys" not in caplog.text
