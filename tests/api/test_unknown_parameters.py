"""What the contract does not declare is refused, never silently ignored: a query parameter of
any operation, a form field of an upload, half an expiry policy, a JSON body field (400, naming
it; a misplaced hyperparameter says where it belongs)."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from tests.conftest import chat_lines
from tests.helpers import create_job, post_job, upload
from tunegate.api.app import SPEC
from tunegate.api.spec import served

DOCUMENT = served(SPEC, keyed=False).document
OPERATIONS = [(method, path) for path, item in DOCUMENT["paths"].items()
              for method in ("get", "post", "delete") if method in item]


def assert_unknown(response: Any, name: str) -> dict[str, Any]:
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == name
    assert error["code"] == "unknown_parameter"
    assert error["type"] == "invalid_request_error"
    assert f"Unknown parameter: '{name}'." in error["message"]
    return dict(error)


def test_every_operation_refuses_an_undeclared_query_parameter(client: Any) -> None:
    assert len(OPERATIONS) >= 19
    for method, path in OPERATIONS:
        url = "/v1" + re.sub(r"\{[^}]+\}", "x", path) + "?not_in_the_contract=1"
        body = {"json": {}} if method == "post" and path != "/files" else {}
        assert_unknown(client.request(method.upper(), url, **body), "not_in_the_contract")


def test_a_flat_metadata_filter_is_refused_with_the_right_form(client: Any) -> None:
    """``?project=x`` (what a generator ignoring ``style: deepObject`` sends) would otherwise
    answer every job; ``metadata[project]=x`` is the filter."""
    training = upload(client)
    kept = create_job(client, training, metadata={"project": "kept"})
    create_job(client, training, metadata={"project": "other"})
    error = assert_unknown(client.get("/v1/fine_tuning/jobs?project=kept"), "project")
    assert "metadata[project]=<value>" in error["message"]
    assert "'metadata[<key>]'" in error["message"]
    listed = client.get("/v1/fine_tuning/jobs", params={"metadata[project]": "kept"})
    assert [job["id"] for job in listed.json()["data"]] == [kept["id"]]


@pytest.mark.parametrize("key", ["limit[a]", "metadata[a]b", "metadatax[a]"])
def test_brackets_only_belong_to_the_deep_object(client: Any, key: str) -> None:
    assert_unknown(client.get("/v1/fine_tuning/jobs", params={key: "1"}), key)


def post_upload(client: Any, **fields: str) -> Any:
    return client.post("/v1/files", data={"purpose": "fine-tune", **fields},
                       files={"file": ("train.jsonl", chat_lines(12))})


@pytest.mark.parametrize(("sent", "missing"), [
    ({"expires_after[anchor]": "created_at"}, "expires_after[seconds]"),
    ({"expires_after[seconds]": "3600"}, "expires_after[anchor]"),
])
def test_half_an_expiry_policy_is_refused(client: Any, sent: dict[str, str], missing: str) -> None:
    answer = post_upload(client, **sent)
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert error["param"] == missing
    assert "needs both form fields" in error["message"]
    assert client.get("/v1/files").json()["data"] == []  # nothing stored


def test_an_expiry_policy_in_one_part_is_refused(client: Any) -> None:
    """A generator that reads OpenAI's spec (``expires_after`` an object) sends it as one JSON
    part; tunegate reads the SDK's two fields, and says so."""
    policy = json.dumps({"anchor": "created_at", "seconds": 3600})
    error = assert_unknown(post_upload(client, expires_after=policy), "expires_after")
    assert "expires_after[anchor], expires_after[seconds]" in error["message"]
    assert_unknown(post_upload(client, **{"expires_after[anchor][x]": "created_at"}),
                   "expires_after[anchor][x]")
    assert_unknown(post_upload(client, project="x"), "project")


def test_a_whole_expiry_policy_sets_expires_at(client: Any) -> None:
    answer = post_upload(client, **{"expires_after[anchor]": "created_at",
                                    "expires_after[seconds]": "3600"})
    assert answer.status_code == 200, answer.text
    stored = answer.json()
    assert stored["expires_at"] == stored["created_at"] + 3600


# ------------------------------------------------------------------------ JSON body fields

JSON_OPERATIONS = [(path, item["post"]) for path, item in DOCUMENT["paths"].items()
                   if "application/json" in item.get("post", {}).get("requestBody", {})
                   .get("content", {})]


def assert_unrecognized(response: Any, param: str) -> str:
    """OpenAI's answer to a body argument it does not know, with the field's path as param."""
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert (error["param"], error["code"], error["type"]) == (
        param, "unknown_parameter", "invalid_request_error")
    assert error["message"].startswith(f"Unrecognized request argument supplied: {param}.")
    return str(error["message"])


def test_every_json_body_refuses_an_undeclared_field(client: Any) -> None:
    assert len(JSON_OPERATIONS) >= 6
    for path, _ in JSON_OPERATIONS:
        url = "/v1" + re.sub(r"\{[^}]+\}", "x", path)
        assert_unrecognized(client.post(url, json={"not_in_the_contract": 1}),
                            "not_in_the_contract")


def test_every_json_body_schema_says_it_takes_no_other_fields() -> None:
    schemas = DOCUMENT["components"]["schemas"]
    for path, operation in JSON_OPERATIONS:
        ref = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        schema = schemas[ref.rsplit("/", 1)[-1]]
        assert schema.get("additionalProperties") is False, path
        assert "refused" in schema.get("description", "") or path.startswith("/uploads") \
            or "permissions" in path, path


def test_a_job_request_with_an_unknown_field_is_refused_and_creates_nothing(
        client: Any) -> None:
    training = upload(client)
    answer = post_job(client, training_file=training, foo=1)
    assert_unrecognized(answer, "foo")
    assert client.get("/v1/fine_tuning/jobs").json()["data"] == []


def test_a_top_level_hyperparameter_says_where_it_belongs(client: Any) -> None:
    """What users of OpenAI's legacy /v1/fine-tunes and many blog snippets write."""
    training = upload(client)
    message = assert_unrecognized(post_job(client, training_file=training, n_epochs=3),
                                  "n_epochs")
    assert ("n_epochs belongs in method.supervised.hyperparameters "
            "(or method.dpo.hyperparameters, method.reinforcement.hyperparameters).") in message
    message = assert_unrecognized(post_job(client, training_file=training, beta=0.1), "beta")
    assert message.endswith("beta belongs in method.dpo.hyperparameters.")


@pytest.mark.parametrize(("fields", "param", "hint"), [
    ({"hyperparameters": {"epochs": 9}}, "hyperparameters.epochs", "Did you mean 'n_epochs'?"),
    ({"method": {"type": "supervised", "supervised": {"hyperparameters": {
        "learning_rate": 0.1}}}}, "method.supervised.hyperparameters.learning_rate",
     "Did you mean 'learning_rate_multiplier'?"),
    ({"method": {"type": "supervised", "supervised": {"hyperparameters": {"beta": 0.1}}}},
     "method.supervised.hyperparameters.beta", "beta belongs in method.dpo.hyperparameters."),
    ({"method": {"type": "supervised", "hyperparameters": {"n_epochs": 2}}},
     "method.hyperparameters", "hyperparameters belongs in method.supervised (or method.dpo"),
    ({"method": {"type": "dpo", "dpo": {"hyperparameters": {"n_epochs": 2}, "beta": 0.1}}},
     "method.dpo.beta", "beta belongs in method.dpo.hyperparameters."),
])
def test_a_misplaced_or_misnamed_hyperparameter_is_refused_with_advice(
        client: Any, fields: dict[str, Any], param: str, hint: str) -> None:
    training = upload(client)
    message = assert_unrecognized(post_job(client, training_file=training, **fields), param)
    assert hint in message, message


def test_every_field_the_openai_sdk_sends_is_still_accepted(client: Any) -> None:
    """``client.fine_tuning.jobs.create``'s arguments, each given."""
    training = upload(client)
    job = create_job(client, training, validation_file=training, suffix="s", seed=7,
                     metadata={"k": "v"},
                     integrations=[{"type": "wandb", "wandb": {"project": "p"}}],
                     method={"type": "supervised", "supervised": {"hyperparameters": {
                         "n_epochs": 2, "batch_size": 1, "learning_rate_multiplier": 0.5}}})
    assert job["method"]["supervised"]["hyperparameters"]["n_epochs"] == 2


CHAT = {"model": "no-such-model", "messages": [{"role": "user", "content": "hi"}]}


def test_chat_completions_accept_openai_parameters_they_ignore(client: Any) -> None:
    """LangChain, LiteLLM and the SDK send these; refusing them would break those clients.
    The unknown model's 404 shows the body passed the contract."""
    ignored = {"user": "u", "store": False, "metadata": {"a": "b"}, "service_tier": "auto",
               "logit_bias": {"1": 0}, "parallel_tool_calls": True, "reasoning_effort": None,
               "stream_options": None, "function_call": None, "prompt_cache_key": "k"}
    answer = client.post("/v1/chat/completions", json={**CHAT, **ignored})
    assert answer.status_code == 404 and answer.json()["error"]["code"] == "model_not_found"
    answer = client.post("/v1/completions", json={"model": "no-such-model", "prompt": "p",
                                                  "user": "u", "logit_bias": {}})
    assert answer.status_code == 404, answer.text


def test_chat_completions_refuse_what_is_not_an_openai_parameter(client: Any) -> None:
    message = assert_unrecognized(
        client.post("/v1/chat/completions", json={**CHAT, "max_token": 5}), "max_token")
    assert message.endswith("Did you mean 'max_tokens'?")
    assert_unrecognized(client.post("/v1/completions", json={
        "model": "m", "prompt": "p", "temprature": 0}), "temprature")


@pytest.mark.parametrize(("params", "schema"), [
    ("openai.types.chat.completion_create_params:CompletionCreateParamsBase",
     "CreateChatCompletionRequest"),
    ("openai.types.completion_create_params:CompletionCreateParamsBase",
     "CreateCompletionRequest"),
    ("openai.types.fine_tuning.job_create_params:JobCreateParams", "CreateFineTuningJobRequest"),
])
def test_the_contract_declares_every_argument_the_installed_sdk_can_send(
        params: str, schema: str) -> None:
    """A newer SDK's new argument must be added to the contract (accepted, maybe ignored), or
    its users get 400 from a body field tunegate refuses."""
    import importlib

    module, name = params.split(":")
    sent = set(getattr(importlib.import_module(module), name).__annotations__)
    assert sent <= set(DOCUMENT["components"]["schemas"][schema]["properties"])
