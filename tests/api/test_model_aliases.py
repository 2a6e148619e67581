"""Model aliases through the API: OpenAI model names (setting TUNEGATE_MODEL_ALIASES) are
accepted where a base model is, echoed as sent, and are names, not models (GET /models does
not list them). With aliases off, they answer 400 as any unknown model does."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import openai
import pytest
from openai import OpenAI

from tests.conftest import VALIDATE_ONLY, Server, chat_lines, start_server, stop_server
from tests.helpers import (
    create_job,
    expect_error,
    post_job,
    sdk_upload,
    upload,
    wait_for_status,
)
from tests.servers import sdk_client
from tests.unit.test_architectures import write_gguf
from tunegate.api.app import create_app
from tunegate.domain.catalog import EMBEDDED_MODEL_ID, embedded_gguf
from tunegate.settings import OPENAI_MODEL_NAMES, Settings

ALIAS = "gpt-4o-mini-2024-07-18"
CHAT = {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 1}


def client_with(settings: Settings, **changes: Any) -> Any:
    return create_app(replace(settings, **changes), validate_responses=True).test_client()


@pytest.mark.parametrize("model", [ALIAS, "gpt-4.1-mini-2025-04-14", "gpt-3.5-turbo",
                                   "davinci-002", "gpt-4o-mini"])
def test_a_job_on_an_openai_name_is_accepted_and_keeps_the_name(client: Any, model: str) -> None:
    job = create_job(client, upload(client), model=model)
    assert job["model"] == model and job["status"] == "validating_files"
    assert client.get(f"/v1/fine_tuning/jobs/{job['id']}").json()["model"] == model


def test_with_aliases_off_an_openai_name_is_an_unknown_model(settings: Settings) -> None:
    with client_with(settings, model_aliases=()) as client:
        response = post_job(client, model=ALIAS, training_file=upload(client))
        error = expect_error(client, response, 400, param="model", code="model_not_available")
        assert error["message"] == (
            f"Model {ALIAS} is not available for fine-tuning or does not exist. Available base "
            f"models: {EMBEDDED_MODEL_ID}; fine-tuned models and checkpoints (ft:…) of this "
            "project, or shared with it, can be trained further; OpenAI model names are not "
            "accepted on this server (setting TUNEGATE_MODEL_ALIASES is off).")
        expect_error(client, client.post("/v1/chat/completions", json={"model": ALIAS, **CHAT}),
                     404, param="model", code="model_not_found")


def test_an_unknown_model_is_told_the_aliases_there_are(client: Any) -> None:
    error = expect_error(client, post_job(client, model="gpt-9", training_file=upload(client)),
                         400, param="model", code="model_not_available")
    assert error["message"].startswith(
        f"Model gpt-9 is not available for fine-tuning or does not exist. Available base "
        f"models: {EMBEDDED_MODEL_ID};")
    assert f"(setting TUNEGATE_MODEL_ALIASES): {', '.join(OPENAI_MODEL_NAMES)}." \
        in error["message"]


def test_an_alias_of_a_missing_base_is_refused_naming_it(settings: Settings) -> None:
    with client_with(settings, model_aliases=(("gpt-4o", "Qwen-none"),)) as client:
        error = expect_error(client, post_job(client, model="gpt-4o", training_file=upload(client)),
                             400, param="model", code="model_not_available")
        assert error["message"].startswith(
            "Model gpt-4o stands for the base model Qwen-none on this server (setting "
            "TUNEGATE_MODEL_ALIASES), which is not available.")
        expect_error(client, client.post("/v1/chat/completions", json={"model": "gpt-4o", **CHAT}),
                     400, param="model", code="model_not_servable")


def test_an_operators_model_of_an_aliased_name_is_that_model(settings: Settings) -> None:
    """A base model file named gpt-4o-mini wins over the alias; it is listed as itself."""
    settings.base_models_dir.mkdir(parents=True)
    write_gguf(settings.base_models_dir / "gpt-4o-mini.gguf", "llama")
    with client_with(settings) as client:
        listed = [m["id"] for m in client.get("/v1/models").json()["data"]]
        assert "gpt-4o-mini" in listed
        assert client.get("/v1/models/gpt-4o-mini").json()["owned_by"] == "operator"
    service = create_app(settings).state_service
    assert service.completions.servable("default", "gpt-4o-mini").base.name == "gpt-4o-mini.gguf"


def test_aliases_are_not_models(client: Any) -> None:
    listed = [model["id"] for model in client.get("/v1/models").json()["data"]]
    assert listed == [EMBEDDED_MODEL_ID]
    for method, path in (("GET", f"/v1/models/{ALIAS}"), ("DELETE", f"/v1/models/{ALIAS}"),
                         ("GET", f"/v1/models/{ALIAS}/adapter")):
        expect_error(client, client.request(method, path), 404, param="model",
                     code="model_not_found")


def test_chat_with_an_alias_runs_the_base_in_its_own_process(app: Any) -> None:
    """Served like the base (one llama.cpp process for both names); nothing starts here."""
    service = app.state_service
    files = service.completions.servable("default", "gpt-4o-mini")
    assert (files.model_id, files.base, files.adapter) == (EMBEDDED_MODEL_ID, embedded_gguf(),
                                                           None)
    assert service.completions.servable("default", EMBEDDED_MODEL_ID) == files


def test_the_documented_chat_only_aliases_run_their_local_models(settings: Settings) -> None:
    """The README's and docs/usage.md's TUNEGATE_MODEL_ALIASES examples parse, and their names
    are served by the base they stand for (Qwen, which the docs name, is not installed here)."""
    root = Path(__file__).resolve().parents[2]
    documented = [value for page in ("README.md", "docs/usage.md")
                  for value in re.findall(r"TUNEGATE_MODEL_ALIASES='([^']+)'",
                                          (root / page).read_text())]
    assert len(documented) == 2
    for value in documented:
        aliases = dict(Settings.from_env({"TUNEGATE_MODEL_ALIASES": value}).model_aliases)
        assert aliases["gpt-4-turbo"] == EMBEDDED_MODEL_ID
        assert aliases["gpt-4o-mini"] == EMBEDDED_MODEL_ID  # from "*", kept
        service = create_app(replace(settings, model_aliases=tuple(aliases.items()))).state_service
        for name in ("gpt-4-turbo", "gpt-4o-mini"):
            assert service.completions.servable("default", name).base == embedded_gguf()
    assert dict(Settings.from_env({"TUNEGATE_MODEL_ALIASES": documented[1]}).model_aliases)[
        "gpt-4o"] == "Qwen2.5-1.5B-Instruct"  # a later entry wins over "*"


# A real server and the official SDK ---------------------------------------------------------


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Server]]:
    """A default server and one with aliases off (workers that validate, not train)."""
    with pytest.MonkeyPatch.context() as patch:
        for name in ("TUNEGATE_MODEL_ALIASES", "TUNEGATE_MODELS_DIR", "TUNEGATE_WORKER"):
            patch.delenv(name, raising=False)
        running = {
            "default": start_server(tmp_path_factory.mktemp("aliases"), env=VALIDATE_ONLY),
            "off": start_server(tmp_path_factory.mktemp("aliases-off"),
                                env={**VALIDATE_ONLY, "TUNEGATE_MODEL_ALIASES": "off"})}
    yield running
    for server in running.values():
        stop_server(server)


@pytest.fixture(params=[False, True], ids=["loose", "strict"])
def sdk(request: pytest.FixtureRequest, servers: dict[str, Server]) -> Iterator[dict[str, OpenAI]]:
    """An SDK client of each server, loose or strict."""
    clients = {name: sdk_client(server, api_key="local", max_retries=0,
                            _strict_response_validation=request.param)
               for name, server in servers.items()}
    yield clients
    for client in clients.values():
        client.close()


def test_the_sdk_creates_a_job_on_an_openai_name_and_is_warned(sdk: dict[str, OpenAI]) -> None:
    client = sdk["default"]
    job = client.fine_tuning.jobs.create(model=ALIAS,
                                         training_file=sdk_upload(client, chat_lines(12)).id)
    assert job.model == ALIAS and job.fine_tuned_model is None
    queued = wait_for_status(client, job.id, "queued", passing=("validating_files",))
    assert queued.model == ALIAS
    events = list(client.fine_tuning.jobs.list_events(job.id))
    warnings = [event.message for event in events if event.level == "warn"]
    assert len(warnings) == 1 and warnings[0].startswith(
        f"{ALIAS} is an alias (setting TUNEGATE_MODEL_ALIASES): this server trains its local "
        f"base model {EMBEDDED_MODEL_ID} in its place.")
    assert ALIAS in [job.model for job in client.fine_tuning.jobs.list()]


def test_the_sdk_is_told_400_when_aliases_are_off(sdk: dict[str, OpenAI]) -> None:
    client = sdk["off"]
    training = sdk_upload(client, chat_lines(12)).id
    with pytest.raises(openai.BadRequestError) as raised:
        client.fine_tuning.jobs.create(model=ALIAS, training_file=training)
    assert raised.value.status_code == 400 and raised.value.code == "model_not_available"
    assert raised.value.param == "model"
    assert f"Available base models: {EMBEDDED_MODEL_ID};" in raised.value.message
    assert "TUNEGATE_MODEL_ALIASES is off" in raised.value.message
    assert client.fine_tuning.jobs.create(model=EMBEDDED_MODEL_ID,
                                          training_file=training).model == EMBEDDED_MODEL_ID


def test_the_embedded_worker_gets_the_servers_aliases(tmp_path: Path) -> None:
    from tunegate.supervision import worker_environment

    settings = Settings(data_dir=tmp_path, model_aliases=(("gpt-4o", "Mine"),))
    env = worker_environment(settings)
    assert Settings.from_env(env).model_aliases == (("gpt-4o", "Mine"),)
    assert worker_environment(Settings(data_dir=tmp_path, model_aliases=()))[
        "TUNEGATE_MODEL_ALIASES"] == "off"
