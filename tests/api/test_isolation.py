"""Projects are walls: every route, each project's objects probed with the other project's key
and with no key gets 0 successes, and the same routes with the owner's key succeed.

Each project gets a ``World`` built the way the server builds one: files uploaded and jobs created
through the API with its key, then one job driven to ``succeeded`` through the store exactly as
the worker does (checkpoint, results file, model and checkpoint model rows, adapter files), so
nothing here trains. The wrong key's answer must be the very answer a never-existing id of the
same shape gets: same status, same body (the id aside), so not even existence leaks.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from tests.api.conftest import ADMIN, ALICE, BOB, TestKey
from tests.conftest import chat_lines
from tests.helpers import add_parts, create_job, create_upload, upload
from tunegate import ids
from tunegate.api.service import Service
from tunegate.domain.catalog import EMBEDDED_MODEL_ID
from tunegate.domain.files import FINE_TUNE_RESULTS, StoredFile
from tunegate.domain.jobs import (
    Checkpoint,
    JobStatus,
    checkpoint_model_name,
    fine_tuned_model_name,
    job_event,
    now,
)
from tunegate.store.base import FineTunedModel


@dataclass(frozen=True)
class World:
    """One project's objects of every kind."""

    key: TestKey
    training_file: str
    spare_file: str  # deleted by the owner at the end
    result_file: str
    job: str  # succeeded: events, a checkpoint, a model, a results file
    live_job: str  # queued: paused, resumed and cancelled by the owner
    model: str
    checkpoint_model: str
    upload: str  # pending, with one part: completed by the owner
    part: str
    spare_upload: str  # pending: cancelled by the owner


def succeed(service: Service, job_id: str, key: TestKey, folder: Path) -> tuple[str, str, str]:
    """Drive ``job_id`` to ``succeeded`` as the worker would; return (model, checkpoint, results)."""
    store = service.store
    for status in (JobStatus.QUEUED, JobStatus.RUNNING):
        store.transition(job_id, status, events=[job_event(job_id, f"moved to {status.value}")])
    name = fine_tuned_model_name(EMBEDDED_MODEL_ID, key.organization, "m", job_id)
    checkpoint_name = checkpoint_model_name(name, 10)
    (folder / "adapter").mkdir(parents=True)
    (folder / "adapter" / "adapter_config.json").write_text("{}")
    (folder / "adapter.gguf").write_bytes(b"GGUF not really")
    store.add_checkpoint(Checkpoint(id=ids.new_id(ids.CHECKPOINT), job_id=job_id,
                                    created_at=now(), fine_tuned_model_checkpoint=checkpoint_name,
                                    step_number=10, metrics={"step": 10}), str(folder))
    results = ids.new_id(ids.FILE)
    size = service.storage.write(results, io.BytesIO(b"step,train_loss\n1,0.5\n"))
    models = [FineTunedModel(id=model_id, project_id=key.project, job_id=job_id,
                             base_model=EMBEDDED_MODEL_ID, created_at=now(), kind=kind,
                             path=str(folder))
              for model_id, kind in ((name, "model"), (checkpoint_name, "checkpoint"))]
    store.transition(
        job_id, JobStatus.SUCCEEDED, events=[job_event(job_id, "done")],
        changes={"fine_tuned_model": name, "finished_at": now(), "result_files": [results]},
        new_files=[StoredFile(id=results, project_id=key.project, bytes=size, created_at=now(),
                              filename=f"{job_id}-results.csv", purpose=FINE_TUNE_RESULTS)],
        new_models=models)
    return name, checkpoint_name, results


def build_world(client: Any, service: Service, key: TestKey, folder: Path) -> World:
    training_file = upload(client, headers=key.headers)
    spare_file = upload(client, name="spare.jsonl", headers=key.headers)
    job = create_job(client, training_file, headers=key.headers, suffix="m")["id"]
    live_job = create_job(client, training_file, headers=key.headers, suffix="live")["id"]
    service.store.transition(live_job, JobStatus.QUEUED, events=[job_event(live_job, "queued")])
    model, checkpoint_model, result_file = succeed(service, job, key, folder)
    content = chat_lines(12)
    in_parts = create_upload(client, len(content), headers=key.headers)
    [part] = add_parts(client, in_parts, content, len(content), headers=key.headers)
    spare_upload = create_upload(client, 10, headers=key.headers)
    return World(key, training_file, spare_file, result_file, job, live_job, model,
                 checkpoint_model, in_parts, part, spare_upload)


@dataclass(frozen=True)
class Form:
    """A multipart body (``files=`` of the test client)."""

    files: dict[str, Any]


# (method, path, JSON body, a form or None) for each route, for one world's objects. Read routes
# first, then those that change state in the order the owner can apply them, deletions last.
Route = tuple[str, str, dict[str, Any] | Form | None]


def routes(world: World) -> list[Route]:
    return [
        ("GET", f"/v1/files/{world.training_file}", None),
        ("GET", f"/v1/files/{world.training_file}/content", None),
        ("GET", f"/v1/files/{world.result_file}", None),
        ("GET", f"/v1/files/{world.result_file}/content", None),
        ("GET", f"/v1/fine_tuning/jobs/{world.job}", None),
        ("GET", f"/v1/fine_tuning/jobs/{world.job}/events", None),
        # The live stream (a finished job: its stored events, then the end).
        ("GET", f"/v1/fine_tuning/jobs/{world.job}/events?stream=true", None),
        ("GET", f"/v1/fine_tuning/jobs/{world.job}/checkpoints", None),
        ("GET", f"/v1/models/{world.model}", None),
        ("GET", f"/v1/models/{world.checkpoint_model}", None),
        ("GET", f"/v1/models/{world.model}/adapter?format=gguf", None),
        ("GET", f"/v1/models/{world.checkpoint_model}/adapter?format=peft", None),
        ("POST", f"/v1/fine_tuning/jobs/{world.live_job}/pause", None),
        ("POST", f"/v1/fine_tuning/jobs/{world.live_job}/resume", None),
        ("POST", f"/v1/fine_tuning/jobs/{world.live_job}/cancel", None),
        ("POST", f"/v1/uploads/{world.upload}/parts", Form({"data": ("b", b"extra part")})),
        ("POST", f"/v1/uploads/{world.upload}/complete", {"part_ids": [world.part]}),
        ("POST", f"/v1/uploads/{world.spare_upload}/cancel", None),
        ("DELETE", f"/v1/files/{world.spare_file}", None),
        ("DELETE", f"/v1/models/{world.checkpoint_model}", None),
    ]


# Routes whose success needs llama.cpp and a real adapter: probed here (the refusal comes before
# any model loads), served to the owner in tests/inference/test_api.py.
def inference_routes(world: World) -> list[Route]:
    return [
        ("POST", "/v1/chat/completions", {"model": world.model,
                                          "messages": [{"role": "user", "content": "hi"}]}),
        ("POST", "/v1/completions", {"model": world.checkpoint_model, "prompt": "hi"}),
    ]


# Creates that name another project's objects: answered as for a missing id (400, same body).
def create_routes(world: World) -> list[Route]:
    return [
        ("POST", "/v1/fine_tuning/jobs", {"model": EMBEDDED_MODEL_ID,
                                          "training_file": world.training_file}),
        ("POST", "/v1/fine_tuning/jobs", {"model": world.model,
                                          "training_file": world.training_file}),
    ]


# Routes only admin keys may use: any other key, the owner's too, gets the same 403 before
# anything is looked up (so it tells nothing either).
def admin_routes(world: World) -> list[Route]:
    permissions = f"/v1/fine_tuning/checkpoints/{world.checkpoint_model}/permissions"
    return [
        ("POST", permissions, {"project_ids": ["proj-somebody"]}),
        ("GET", permissions, None),
        ("DELETE", f"{permissions}/cp_00VcbQuodSf3yCyiRXhpLMIY", None),
    ]


def never_existed(object_id: str) -> str:
    """The same id with other random characters: the shape of an object nobody has."""
    if object_id.startswith("ft:"):  # ft:{base}:{org}:{suffix}:{id}[:ckpt-step-N]
        parts = object_id.split(":")
        parts[4] = "Zz9Zz9Zz"
        return ":".join(parts)
    return object_id[:-8] + "Zz9Zz9Zz"


def swap(text: str, pairs: list[tuple[str, str]]) -> str:
    for old, new in pairs:
        text = text.replace(old, new)
    return text


def send(client: Any, route: Route, headers: dict[str, str]) -> Any:
    method, path, body = route
    if isinstance(body, Form):
        return client.request(method, path, headers=headers, files=body.files)
    return client.request(method, path, headers=headers, json=body)


@pytest.fixture
def worlds(keyed_app: Any, keyed_client: Any, tmp_path: Path) -> tuple[World, World]:
    service = keyed_app.state_service
    return (build_world(keyed_client, service, ALICE, tmp_path / "alice"),
            build_world(keyed_client, service, BOB, tmp_path / "bob"))


def assert_answers_as_missing(client: Any, route: Route, key: TestKey, real_ids: list[str],
                              statuses: tuple[int, ...] = (404,)) -> None:
    """``key`` gets the answer a never-existing id gets, byte for byte (the id aside)."""
    response = send(client, route, key.headers)
    assert response.status_code in statuses, (route, response.status_code, response.text)
    longest_first = sorted(real_ids, key=len, reverse=True)
    to_fake = [(real, never_existed(real)) for real in longest_first]
    method, path, body = route
    fake_body = body if not isinstance(body, dict) else {
        name: swap(value, to_fake) if isinstance(value, str)
        else [swap(item, to_fake) if isinstance(item, str) else item for item in value]
        if isinstance(value, list) else value
        for name, value in body.items()}
    missing = send(client, (method, swap(path, to_fake), fake_body), key.headers)
    assert missing.status_code == response.status_code, (route, missing.text)
    assert swap(missing.text, [(fake, real) for real, fake in to_fake]) == response.text, route


def test_every_route_refuses_the_other_project_and_no_key(keyed_client: Any,
                                                         worlds: tuple[World, World]) -> None:
    probes = 0
    for owner, other in (worlds, worlds[::-1]):
        real_ids = [owner.training_file, owner.result_file, owner.job, owner.live_job,
                    owner.spare_file, owner.model, owner.checkpoint_model, owner.upload,
                    owner.part, owner.spare_upload]
        for route in routes(owner) + inference_routes(owner) + admin_routes(owner):
            for headers in ({}, {"Authorization": "Bearer sk-tg-wrong"}):
                response = send(keyed_client, route, headers)
                assert response.status_code == 401, (route, response.text)
                assert response.json()["error"]["code"] == "invalid_api_key"
            if route in admin_routes(owner):
                assert_answers_as_missing(keyed_client, route, other.key, real_ids, (403,))
                assert_answers_as_missing(keyed_client, route, owner.key, real_ids, (403,))
            else:
                assert_answers_as_missing(keyed_client, route, other.key, real_ids)
            probes += 3
        for route in create_routes(owner):
            assert_answers_as_missing(keyed_client, route, other.key, real_ids, (400,))
            probes += 1
        # Listings never show the other project's objects.
        listed = " ".join(send(keyed_client, ("GET", path, None), other.key.headers).text
                          for path in ("/v1/files?limit=100", "/v1/fine_tuning/jobs?limit=100",
                                       "/v1/models"))
        leaked = [object_id for object_id in real_ids if object_id in listed]
        assert not leaked
    print(f"\nisolation matrix: {probes} probes, 0 successes")


def test_the_owner_key_succeeds_on_every_route(keyed_client: Any,
                                               worlds: tuple[World, World]) -> None:
    for world in worlds:
        for route in routes(world):
            response = send(keyed_client, route, world.key.headers)
            assert response.status_code == 200, (route, response.text)
        job = keyed_client.get(f"/v1/fine_tuning/jobs/{world.job}", headers=world.key.headers)
        assert job.json()["organization_id"] == world.key.organization
        assert job.json()["fine_tuned_model"].split(":")[2] == world.key.organization
        listed = keyed_client.get("/v1/models", headers=world.key.headers).json()["data"]
        assert world.model in [model["id"] for model in listed]
        assert EMBEDDED_MODEL_ID in [model["id"] for model in listed]  # base models are shared


def test_admin_sees_and_manages_every_project(keyed_client: Any,
                                              worlds: tuple[World, World]) -> None:
    listed = keyed_client.get("/v1/fine_tuning/jobs?limit=100", headers=ADMIN.headers).json()
    assert {world.job for world in worlds} <= {job["id"] for job in listed["data"]}
    models = keyed_client.get("/v1/models", headers=ADMIN.headers).json()["data"]
    assert {world.model for world in worlds} <= {model["id"] for model in models}
    for route in routes(worlds[0]):
        response = send(keyed_client, route, ADMIN.headers)
        assert response.status_code == 200, (route, response.text)
    # Only an admin manages checkpoint permissions, of any project's models.
    permissions = f"/v1/fine_tuning/checkpoints/{worlds[1].checkpoint_model}/permissions"
    granted = keyed_client.post(permissions, headers=ADMIN.headers,
                                json={"project_ids": ["proj-somebody"]})
    assert granted.status_code == 200, granted.text
    listed = keyed_client.get(permissions, headers=ADMIN.headers).json()["data"]
    assert listed == granted.json()["data"]
    deleted = keyed_client.delete(f"{permissions}/{listed[0]['id']}", headers=ADMIN.headers)
    assert deleted.status_code == 200, deleted.text
    # What an admin creates goes into its own project, in its own organization.
    own_file = upload(keyed_client, headers=ADMIN.headers)
    job = create_job(keyed_client, own_file, headers=ADMIN.headers)
    assert job["organization_id"] == ADMIN.organization
    assert keyed_client.get(f"/v1/files/{own_file}", headers=ALICE.headers).status_code == 404



def test_a_shared_checkpoint_crosses_the_wall_until_it_is_taken_back(
        keyed_client: Any, worlds: tuple[World, World]) -> None:
    """An admin shares one of Alice's checkpoints with Bob: Bob reads it and trains from it,
    and sees nothing else of Alice's; once the permission is deleted, every route answers Bob
    exactly as for a model that never existed."""
    alice, bob = worlds
    checkpoint = alice.checkpoint_model
    permissions = f"/v1/fine_tuning/checkpoints/{checkpoint}/permissions"
    granted = keyed_client.post(permissions, headers=ADMIN.headers,
                                json={"project_ids": [bob.key.project]})
    assert granted.status_code == 200, granted.text
    model_routes: list[Route] = [
        ("GET", f"/v1/models/{checkpoint}", None),
        ("GET", f"/v1/models/{checkpoint}/adapter?format=peft", None),
    ]
    for route in model_routes:
        assert send(keyed_client, route, bob.key.headers).status_code == 200, route
    job = create_job(keyed_client, bob.training_file, headers=bob.key.headers, model=checkpoint)
    assert job["model"] == checkpoint
    listed = [model["id"] for model in
              keyed_client.get("/v1/models", headers=bob.key.headers).json()["data"]]
    assert checkpoint in listed and alice.model not in listed
    real_ids = [alice.model, checkpoint, alice.training_file]
    assert_answers_as_missing(keyed_client, ("GET", f"/v1/models/{alice.model}", None),
                              bob.key, real_ids)
    permission_id = granted.json()["data"][0]["id"]
    deleted = keyed_client.delete(f"{permissions}/{permission_id}", headers=ADMIN.headers)
    assert deleted.status_code == 200, deleted.text
    for route in [*model_routes, ("DELETE", f"/v1/models/{checkpoint}", None),
                  *inference_routes(replace(alice, model=checkpoint))]:
        assert_answers_as_missing(keyed_client, route, bob.key, real_ids)
    assert_answers_as_missing(keyed_client, ("POST", "/v1/fine_tuning/jobs", {
        "model": checkpoint, "training_file": bob.training_file}), bob.key, real_ids, (400,))
    assert checkpoint not in [model["id"] for model in
                              keyed_client.get("/v1/models", headers=bob.key.headers).json()["data"]]
