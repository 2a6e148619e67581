"""Checkpoint permissions (issue 14): an admin key shares a fine-tuned model or checkpoint of one
project with another, which can then see it, serve it and train from it, but not delete it;
taking the permission back makes it answer there exactly as a model that never existed.

Shapes are OpenAI's (``FineTuningCheckpointPermission``, a list envelope from create, ``cp_``
ids, ``order`` ascending/descending, newest first); OpenAI requires an admin key for all three
operations, and so does tunegate (403 ``admin_key_required`` for any other key, checked before
anything is looked up).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from tests.api.conftest import ADMIN, ALICE, BOB, KEYS, TestKey, write_keys_file
from tests.api.test_errors import expect_error
from tests.api.test_isolation import World, assert_answers_as_missing, build_world
from tests.helpers import create_job, post_job, upload
from tunegate.api.app import create_app
from tunegate.domain.jobs import JobStatus
from tunegate.settings import Settings

CAROL = TestKey("sk-tg-carol-00000000000000000000000000000", "proj-carol", "org-alice")


def permissions_path(model: str, permission_id: str | None = None) -> str:
    path = f"/v1/fine_tuning/checkpoints/{model}/permissions"
    return f"{path}/{permission_id}" if permission_id else path


def share(client: Any, model: str, *projects: str, key: TestKey = ADMIN) -> Any:
    return client.post(permissions_path(model), headers=key.headers,
                       json={"project_ids": list(projects)})


@pytest.fixture
def client(settings: Settings, tmp_path: Path) -> Any:
    keys = write_keys_file(tmp_path / "keys.json", (*KEYS, CAROL))
    app = create_app(replace(settings, keys_file=keys, rate_limit=0), validate_responses=True)
    with app.test_client() as test_client:
        test_client.service = app.state_service
        # expect_error's "the server still serves" request goes without headers of its own;
        # every request of the tests names its key.
        test_client.headers["Authorization"] = ADMIN.headers["Authorization"]
        yield test_client


@pytest.fixture
def alice(client: Any, tmp_path: Path) -> World:
    """Alice's project with a succeeded job: a model and a checkpoint model."""
    return build_world(client, client.service, ALICE, tmp_path / "alice")


def test_only_admin_keys_manage_permissions(client: Any, alice: World) -> None:
    missing = "ft:SmolLM2-135M-Instruct:org-alice:m:Zz9Zz9Zz"
    for key in (ALICE, BOB):
        for model in (alice.checkpoint_model, missing):  # refused before any lookup
            for method, path, body in (
                    ("POST", permissions_path(model), {"project_ids": [BOB.project]}),
                    ("GET", permissions_path(model), None),
                    ("DELETE", permissions_path(model, "cp_00VcbQuodSf3yCyiRXhpLMIY"), None)):
                response = client.request(method, path, json=body, headers=key.headers)
                expect_error(client, response, 403, code="admin_key_required",
                             says="admin API key")
                assert response.headers["x-should-retry"] == "false"


def test_open_mode_has_no_admin(settings: Settings) -> None:
    with create_app(settings, validate_responses=True).test_client() as open_client:
        response = share(open_client, "ft:a:b::c", "other", key=TestKey("", "", ""))
        expect_error(open_client, response, 403, code="admin_key_required")


def test_a_shared_checkpoint_is_seen_served_and_trained_from(client: Any, alice: World) -> None:
    checkpoint = alice.checkpoint_model
    assert client.get(f"/v1/models/{checkpoint}", headers=BOB.headers).status_code == 404
    response = share(client, checkpoint, BOB.project)
    assert response.status_code == 200, response.text
    listed = response.json()
    [granted] = listed["data"]
    assert listed["object"] == "list" and listed["has_more"] is False
    assert listed["first_id"] == listed["last_id"] == granted["id"]
    assert granted["id"].startswith("cp_") and granted["object"] == "checkpoint.permission"
    assert granted["project_id"] == BOB.project and isinstance(granted["created_at"], int)
    model = client.get(f"/v1/models/{checkpoint}", headers=BOB.headers)
    assert model.status_code == 200 and model.json()["owned_by"] == ALICE.project
    assert checkpoint in [m["id"] for m in client.get("/v1/models", headers=BOB.headers)
                          .json()["data"]]
    adapter = client.get(f"/v1/models/{checkpoint}/adapter?format=gguf", headers=BOB.headers)
    assert adapter.status_code == 200
    # Bob trains from it, with a file of his own; the job is his.
    job = create_job(client, upload(client, headers=BOB.headers), headers=BOB.headers,
                     model=checkpoint)
    assert job["model"] == checkpoint and job["organization_id"] == BOB.organization
    # Carol, given nothing, sees nothing.
    assert client.get(f"/v1/models/{checkpoint}", headers=CAROL.headers).status_code == 404
    assert checkpoint not in client.get("/v1/models", headers=CAROL.headers).text


def test_the_project_it_is_shared_with_cannot_delete_it(client: Any, alice: World) -> None:
    assert share(client, alice.model, BOB.project).status_code == 200
    response = client.delete(f"/v1/models/{alice.model}", headers=BOB.headers)
    expect_error(client, response, 403, param="model", code="model_not_owned")
    assert client.get(f"/v1/models/{alice.model}", headers=ALICE.headers).status_code == 200


def test_taking_it_back_makes_it_answer_as_missing(client: Any, alice: World) -> None:
    checkpoint = alice.checkpoint_model
    granted = share(client, checkpoint, BOB.project).json()["data"][0]
    bob_file = upload(client, headers=BOB.headers)
    deleted = client.delete(permissions_path(checkpoint, granted["id"]), headers=ADMIN.headers)
    assert deleted.status_code == 200, deleted.text
    assert deleted.json() == {"id": granted["id"], "object": "checkpoint.permission",
                              "deleted": True}
    real = [checkpoint, alice.model]
    for route in (("GET", f"/v1/models/{checkpoint}", None),
                  ("GET", f"/v1/models/{checkpoint}/adapter?format=peft", None),
                  ("DELETE", f"/v1/models/{checkpoint}", None)):
        assert_answers_as_missing(client, route, BOB, real)
    assert_answers_as_missing(client, ("POST", "/v1/fine_tuning/jobs",
                                       {"model": checkpoint, "training_file": bob_file}),
                              BOB, real, (400,))
    assert checkpoint not in client.get("/v1/models", headers=BOB.headers).text
    again = client.delete(permissions_path(checkpoint, granted["id"]), headers=ADMIN.headers)
    expect_error(client, again, 404, param="permission_id")


def test_granting_twice_keeps_one_permission(client: Any, alice: World) -> None:
    first = share(client, alice.model, BOB.project).json()["data"][0]
    again = share(client, alice.model, CAROL.project, BOB.project, BOB.project).json()["data"]
    assert [p["project_id"] for p in again] == [CAROL.project, BOB.project]
    assert again[1] == first
    listed = client.get(permissions_path(alice.model), headers=ADMIN.headers).json()
    assert [p["project_id"] for p in listed["data"]] == [CAROL.project, BOB.project]


def test_list_pages_by_last_id_filters_and_orders(client: Any, alice: World) -> None:
    projects = [f"proj-{i}" for i in range(5)]
    granted = share(client, alice.model, *projects).json()["data"]
    path = permissions_path(alice.model)
    page = client.get(f"{path}?limit=2", headers=ADMIN.headers).json()
    assert [p["id"] for p in page["data"]] == [granted[4]["id"], granted[3]["id"]]
    assert page["has_more"] is True
    rest = client.get(f"{path}?limit=10&after={page['last_id']}", headers=ADMIN.headers).json()
    assert [p["id"] for p in rest["data"]] == [g["id"] for g in granted[2::-1]]
    assert rest["has_more"] is False
    ascending = client.get(f"{path}?order=ascending", headers=ADMIN.headers).json()
    assert [p["id"] for p in ascending["data"]] == [g["id"] for g in granted]
    only = client.get(f"{path}?project_id=proj-3", headers=ADMIN.headers).json()
    assert [p["id"] for p in only["data"]] == [granted[3]["id"]]
    expect_error(client, client.get(f"{path}?order=up", headers=ADMIN.headers), 400,
                 param="order")
    empty = client.get(f"{path}?after={granted[0]['id']}", headers=ADMIN.headers).json()
    assert empty["data"] == [] and empty["first_id"] is None and empty["last_id"] is None


def test_refusals(client: Any, alice: World) -> None:
    missing = "ft:SmolLM2-135M-Instruct:org-alice:m:Zz9Zz9Zz"
    for response in (share(client, missing, BOB.project),
                     client.get(permissions_path(missing), headers=ADMIN.headers),
                     client.delete(permissions_path(missing, "cp_x"), headers=ADMIN.headers)):
        expect_error(client, response, 404, param="fine_tuned_model_checkpoint",
                     code="model_not_found")
    expect_error(client, share(client, alice.model, ALICE.project), 400, param="project_ids",
                 says="owns")
    expect_error(client, share(client, alice.model), 400, param="project_ids")
    expect_error(client, share(client, alice.model, "p" * 65), 400)
    other = share(client, alice.checkpoint_model, BOB.project).json()["data"][0]
    # A permission answers only under its own model.
    response = client.delete(permissions_path(alice.model, other["id"]), headers=ADMIN.headers)
    expect_error(client, response, 404, param="permission_id")


def test_a_job_of_the_other_project_keeps_the_model_from_being_deleted(
        client: Any, alice: World) -> None:
    assert share(client, alice.model, BOB.project).status_code == 200
    bob_job = create_job(client, upload(client, headers=BOB.headers), headers=BOB.headers,
                         model=alice.model)["id"]
    response = client.delete(f"/v1/models/{alice.model}", headers=ALICE.headers)
    error = expect_error(client, response, 409, code="model_in_use")
    assert bob_job not in error["message"]  # Alice learns that it is used, not by what
    client.service.store.transition(bob_job, JobStatus.CANCELLED, events=[])
    assert client.delete(f"/v1/models/{alice.model}", headers=ALICE.headers).status_code == 200
    # Deleting the model ended its permissions.
    expect_error(client, client.get(permissions_path(alice.model), headers=ADMIN.headers), 404)
    assert post_job(client, model=alice.model, training_file=upload(
        client, headers=BOB.headers), headers=BOB.headers).status_code == 400
