"""Checks on the hand-written contract, openapi.yaml.

* Every `example` / `examples` in the document validates against the schema it illustrates
  (OpenAPI 3.0 semantics, via openapi-schema-validator's OAS30Validator).
* The document is a valid OpenAPI 3.0 description (openapi-spec-validator).
* A few structural promises of the contract hold: OpenAI's operationIds, each bound to its
  handler, the top-level-only `security`, the error responses
  and the `x-request-id` header on every operation, and "every key of a response object is
  required" on the response schemas.
"""

from __future__ import annotations

import copy
import importlib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from openapi_schema_validator import OAS30Validator, oas30_format_checker

SPEC_PATH = Path(__file__).resolve().parents[1] / "openapi.yaml"
SPEC: dict[str, Any] = yaml.safe_load(SPEC_PATH.read_text(encoding="utf-8"))

HTTP_METHODS = ("get", "put", "post", "delete", "patch", "options", "head", "trace")


# --------------------------------------------------------------------------- helpers


def resolve_pointer(ref: str) -> Any:
    assert ref.startswith("#/"), f"only local references are used in this spec: {ref}"
    node: Any = SPEC
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def deref(node: Any, seen: tuple[str, ...] = ()) -> Any:
    """Return a copy of `node` with every local $ref inlined (the spec has no cycles)."""
    if isinstance(node, dict):
        if "$ref" in node:
            ref = node["$ref"]
            assert ref not in seen, f"reference cycle through {ref}"
            return deref(resolve_pointer(ref), (*seen, ref))
        return {key: deref(value, seen) for key, value in node.items()}
    if isinstance(node, list):
        return [deref(item, seen) for item in node]
    return node


def follow(node: dict[str, Any]) -> dict[str, Any]:
    """Follow a top-level $ref once (for parameter/response/header objects)."""
    while "$ref" in node:
        node = resolve_pointer(node["$ref"])
    return node


Case = tuple[str, dict[str, Any], Any]  # (where, schema, example value)


def schema_examples(schema: dict[str, Any], where: str) -> Iterator[Case]:
    """Schema-level `example`s, in this schema and in the inline schemas below it."""
    if "$ref" in schema:
        return  # walked where the referenced component is defined
    if "example" in schema:
        yield where, schema, schema["example"]
    for name, sub in schema.get("properties", {}).items():
        yield from schema_examples(sub, f"{where}.properties.{name}")
    for key in ("items", "additionalProperties", "not"):
        if isinstance(schema.get(key), dict):
            yield from schema_examples(schema[key], f"{where}.{key}")
    for key in ("allOf", "oneOf", "anyOf"):
        for index, sub in enumerate(schema.get(key, [])):
            yield from schema_examples(sub, f"{where}.{key}[{index}]")


def holder_examples(holder: dict[str, Any], where: str) -> Iterator[Case]:
    """`example` / `examples` of a media type, parameter or header object."""
    schema = holder.get("schema")
    if schema is None:
        assert "example" not in holder and "examples" not in holder, where
        return
    if "example" in holder:
        yield f"{where}.example", schema, holder["example"]
    for name, example in holder.get("examples", {}).items():
        example = follow(example)
        if "value" in example:
            yield f"{where}.examples.{name}", schema, example["value"]
    yield from schema_examples(schema, f"{where}.schema")


def content_examples(content: dict[str, Any], where: str) -> Iterator[Case]:
    for media_type, media in content.items():
        yield from holder_examples(media, f"{where}.content[{media_type}]")


def response_examples(response: dict[str, Any], where: str) -> Iterator[Case]:
    if "$ref" in response:
        return  # walked under components.responses
    for name, header in response.get("headers", {}).items():
        if "$ref" not in header:
            yield from holder_examples(header, f"{where}.headers.{name}")
    yield from content_examples(response.get("content", {}), where)


def operations() -> Iterator[tuple[str, str, dict[str, Any], list[dict[str, Any]]]]:
    for path, item in SPEC["paths"].items():
        shared = item.get("parameters", [])
        for method in HTTP_METHODS:
            if method in item:
                yield path, method, item[method], shared


def all_examples() -> list[Case]:
    cases: list[Case] = []
    components = SPEC.get("components", {})
    for name, schema in components.get("schemas", {}).items():
        cases += schema_examples(schema, f"components.schemas.{name}")
    for name, param in components.get("parameters", {}).items():
        cases += holder_examples(param, f"components.parameters.{name}")
    for name, header in components.get("headers", {}).items():
        cases += holder_examples(header, f"components.headers.{name}")
    for name, response in components.get("responses", {}).items():
        cases += response_examples(response, f"components.responses.{name}")
    for name, body in components.get("requestBodies", {}).items():
        cases += content_examples(body.get("content", {}), f"components.requestBodies.{name}")
    for path, method, op, shared in operations():
        where = f"{method.upper()} {path}"
        for param in [*shared, *op.get("parameters", [])]:
            if "$ref" not in param:
                cases += holder_examples(param, f"{where} parameter {param['name']}")
        body = op.get("requestBody")
        if body and "$ref" not in body:
            cases += content_examples(body.get("content", {}), f"{where} requestBody")
        for status, response in op.get("responses", {}).items():
            cases += response_examples(response, f"{where} {status}")
    return cases


def errors_of(schema: dict[str, Any], value: Any) -> list[str]:
    validator = OAS30Validator(deref(schema), format_checker=oas30_format_checker)
    return [
        f"{'/'.join(map(str, error.absolute_path)) or '<root>'}: {error.message}"
        for error in validator.iter_errors(value)
    ]


EXAMPLES = all_examples()


# --------------------------------------------------------------------------- examples


@pytest.mark.parametrize(("where", "schema", "value"), EXAMPLES, ids=[case[0] for case in EXAMPLES])
def test_example_matches_schema(where: str, schema: dict[str, Any], value: Any) -> None:
    assert errors_of(schema, value) == [], where


def test_the_main_objects_have_examples() -> None:
    wheres = {case[0] for case in EXAMPLES}
    for name in (
        "FineTuningJob",
        "FineTuningJobEvent",
        "FineTuningJobCheckpoint",
        "OpenAIFile",
        "Model",
        "ErrorResponse",
        "GatewayNotImplemented",
        "Upload",
        "UploadPart",
        "FineTuningCheckpointPermission",
        "CreateEmbeddingRequest",
        "CreateEmbeddingResponse",
    ):
        assert f"components.schemas.{name}" in wheres, name
    statuses = {
        case[2]["status"]
        for case in EXAMPLES
        if isinstance(case[2], dict) and case[2].get("object") == "fine_tuning.job"
    }
    assert {"queued", "succeeded", "failed", "cancelled", "paused"} <= statuses


def job_example() -> dict[str, Any]:
    return copy.deepcopy(SPEC["components"]["schemas"]["FineTuningJob"]["example"])


JOB_SCHEMA = {"$ref": "#/components/schemas/FineTuningJob"}


@pytest.mark.parametrize(
    ("change", "why"),
    [
        (lambda job: job.update(status="pending"), "status outside the enum"),
        (lambda job: job.pop("fine_tuned_model"), "a required key is missing"),
        (lambda job: job.update(seed=None), "seed is not nullable in responses"),
        (lambda job: job["hyperparameters"].update(n_epochs=0), "n_epochs below 1"),
        (lambda job: job["hyperparameters"].update(learning_rate_multiplier=0), "lrm must be > 0"),
        (
            lambda job: job.update(error={"code": None, "message": None, "param": None}),
            "null error fields",
        ),
        (
            lambda job: job.update(integrations=[{"type": "wandb", "wandb": {"project": "p"}}] * 6),
            "more than 5 integrations",
        ),
    ],
)
def test_validator_is_not_vacuous(change: Any, why: str) -> None:
    job = job_example()
    change(job)
    assert errors_of(JOB_SCHEMA, job), why


def test_nullable_fields_accept_null() -> None:
    job = job_example()
    for key in ("hyperparameters", "integrations", "metadata", "user_provided_suffix", "error"):
        job[key] = None
    job["hyperparameters"] = {"batch_size": None, "learning_rate_multiplier": "auto", "n_epochs": 2}
    assert errors_of(JOB_SCHEMA, job) == []
    request = {
        "model": "SmolLM2-135M-Instruct",
        "training_file": "file-abc123",
        "suffix": None,
        "validation_file": None,
        "integrations": None,
        "seed": None,
        "metadata": None,
    }
    assert errors_of({"$ref": "#/components/schemas/CreateFineTuningJobRequest"}, request) == []
    # What the contract does not declare (an SDK's extra_body, say) is refused, not ignored.
    request["something_from_extra_body"] = True
    assert errors_of({"$ref": "#/components/schemas/CreateFineTuningJobRequest"}, request)


@pytest.mark.parametrize("suffix", ["a:b", "a/b", "", "x" * 65, "sp ace"])
def test_suffix_rules(suffix: str) -> None:
    request = {"model": "m", "training_file": "file-abc123", "suffix": suffix}
    assert errors_of({"$ref": "#/components/schemas/CreateFineTuningJobRequest"}, request)


# --------------------------------------------------------------------------- document


def test_document_is_valid_openapi_3_0() -> None:
    from openapi_spec_validator import validate

    assert SPEC["openapi"].startswith("3.0.")
    validate(SPEC)


JOB_PATH = "/fine_tuning/jobs/{fine_tuning_job_id}"
CHECKPOINT_PATH = "/fine_tuning/checkpoints/{fine_tuned_model_checkpoint}/permissions"
RUN_PATH = "/evals/{eval_id}/runs/{run_id}"
# OpenAI's operationIds (shared/reference/openai-finetuning-subset.yaml; OpenAI's full spec for
# the two inference operations), so that a generated client reads like OpenAI's; tunegate's own
# route is named in their style. Each binds to the handler beside it.
STORED_PATH = "/chat/completions/{completion_id}"
EXPECTED_OPERATIONS = {
    ("post", "/fine_tuning/jobs"): ("createFineTuningJob", "handlers.fine_tuning.create_job"),
    ("get", "/fine_tuning/jobs"): ("listPaginatedFineTuningJobs", "handlers.fine_tuning.list_jobs"),
    ("get", JOB_PATH): ("retrieveFineTuningJob", "handlers.fine_tuning.retrieve_job"),
    ("post", JOB_PATH + "/cancel"): ("cancelFineTuningJob", "handlers.fine_tuning.cancel_job"),
    ("post", JOB_PATH + "/pause"): ("pauseFineTuningJob", "handlers.fine_tuning.pause_job"),
    ("post", JOB_PATH + "/resume"): ("resumeFineTuningJob", "handlers.fine_tuning.resume_job"),
    ("get", JOB_PATH + "/events"): ("listFineTuningEvents", "handlers.fine_tuning.list_events"),
    ("get", JOB_PATH + "/checkpoints"): ("listFineTuningJobCheckpoints",
                                        "handlers.fine_tuning.list_checkpoints"),
    ("post", "/files"): ("createFile", "handlers.files.create_file"),
    ("get", "/files"): ("listFiles", "handlers.files.list_files"),
    ("get", "/files/{file_id}"): ("retrieveFile", "handlers.files.retrieve_file"),
    ("delete", "/files/{file_id}"): ("deleteFile", "handlers.files.delete_file"),
    ("get", "/files/{file_id}/content"): ("downloadFile", "handlers.files.download_file"),
    ("get", "/models"): ("listModels", "handlers.models.list_models"),
    ("get", "/models/{model}"): ("retrieveModel", "handlers.models.retrieve_model"),
    ("delete", "/models/{model}"): ("deleteModel", "handlers.models.delete_model"),
    ("get", "/models/{model}/adapter"): ("downloadModelAdapter",
                                         "handlers.models.download_adapter"),
    ("get", "/chat/completions"): ("listChatCompletions",
                                   "handlers.stored_completions.list_completions"),
    ("get", STORED_PATH): ("getChatCompletion", "handlers.stored_completions.retrieve_completion"),
    ("post", STORED_PATH): ("updateChatCompletion",
                            "handlers.stored_completions.update_completion"),
    ("delete", STORED_PATH): ("deleteChatCompletion",
                              "handlers.stored_completions.delete_completion"),
    ("get", STORED_PATH + "/messages"): ("getChatCompletionMessages",
                                         "handlers.stored_completions.list_messages"),
    ("post", "/chat/completions"): ("createChatCompletion",
                                    "handlers.inference.create_chat_completion"),
    ("post", "/completions"): ("createCompletion", "handlers.inference.create_completion"),
    ("post", "/embeddings"): ("createEmbedding", "handlers.inference.create_embedding"),
    ("post", "/responses"): ("createResponse", "handlers.responses.create_response"),
    ("get", "/responses/{response_id}"): ("retrieveResponse",
                                          "handlers.responses.retrieve_response"),
    ("delete", "/responses/{response_id}"): ("deleteResponse",
                                             "handlers.responses.delete_response"),
    ("post", "/uploads"): ("createUpload", "handlers.uploads.create_upload"),
    ("post", "/uploads/{upload_id}/parts"): ("addUploadPart", "handlers.uploads.add_upload_part"),
    ("post", "/uploads/{upload_id}/complete"): ("completeUpload",
                                                "handlers.uploads.complete_upload"),
    ("post", "/uploads/{upload_id}/cancel"): ("cancelUpload", "handlers.uploads.cancel_upload"),
    ("post", CHECKPOINT_PATH): ("createFineTuningCheckpointPermission",
                                "handlers.permissions.create_permissions"),
    ("get", CHECKPOINT_PATH): ("listFineTuningCheckpointPermissions",
                               "handlers.permissions.list_permissions"),
    ("delete", CHECKPOINT_PATH + "/{permission_id}"): ("deleteFineTuningCheckpointPermission",
                                                       "handlers.permissions.delete_permission"),
    ("get", "/evals"): ("listEvals", "handlers.evals.list_evals"),
    ("post", "/evals"): ("createEval", "handlers.evals.create_eval"),
    ("get", "/evals/{eval_id}"): ("getEval", "handlers.evals.get_eval"),
    ("post", "/evals/{eval_id}"): ("updateEval", "handlers.evals.update_eval"),
    ("delete", "/evals/{eval_id}"): ("deleteEval", "handlers.evals.delete_eval"),
    ("get", "/evals/{eval_id}/runs"): ("getEvalRuns", "handlers.evals.list_runs"),
    ("post", "/evals/{eval_id}/runs"): ("createEvalRun", "handlers.evals.create_run"),
    ("get", RUN_PATH): ("getEvalRun", "handlers.evals.get_run"),
    ("post", RUN_PATH): ("cancelEvalRun", "handlers.evals.cancel_run"),
    ("post", RUN_PATH + "/cancel"): ("cancelEvalRunByPath", "handlers.evals.cancel_run"),
    ("delete", RUN_PATH): ("deleteEvalRun", "handlers.evals.delete_run"),
    ("get", RUN_PATH + "/output_items"): ("getEvalRunOutputItems",
                                          "handlers.evals.list_output_items"),
    ("get", RUN_PATH + "/output_items/{output_item_id}"): ("getEvalRunOutputItem",
                                                           "handlers.evals.get_output_item"),
    ("post", "/fine_tuning/alpha/graders/run"): ("runGrader", "handlers.graders.run_grader"),
    ("post", "/fine_tuning/alpha/graders/validate"): ("validateGrader",
                                                      "handlers.graders.validate_grader"),
    # The SDK's client.webhooks (OpenAI's paths and names); the deliveries list is tunegate's.
    ("post", "/webhook_endpoints"): ("createWebhookEndpoint", "handlers.webhooks.create_endpoint"),
    ("get", "/webhook_endpoints"): ("listWebhookEndpoints", "handlers.webhooks.list_endpoints"),
    ("get", "/webhook_endpoints/{webhook_endpoint_id}"): ("retrieveWebhookEndpoint",
                                                          "handlers.webhooks.retrieve_endpoint"),
    ("delete", "/webhook_endpoints/{webhook_endpoint_id}"): ("deleteWebhookEndpoint",
                                                             "handlers.webhooks.delete_endpoint"),
    ("post", "/webhook_endpoints/{webhook_endpoint_id}"): (
        "updateWebhookEndpoint", "handlers.webhooks.update_endpoint"),
    ("post", "/webhook_endpoints/{webhook_endpoint_id}/rotate_secret"): (
        "rotateWebhookEndpointSecret", "handlers.webhooks.rotate_secret"),
    ("post", "/webhook_endpoints/{webhook_endpoint_id}/test"): (
        "testWebhookEndpoint", "handlers.webhooks.test_endpoint"),
    ("get", "/webhook_endpoints/{webhook_endpoint_id}/deliveries"): (
        "listWebhookDeliveries", "handlers.webhooks.list_deliveries"),
}
OPERATION_IDS = {operation_id for operation_id, _ in EXPECTED_OPERATIONS.values()}


def test_operation_ids_are_openais_names() -> None:
    found = {(method, path): op["operationId"] for path, method, op, _ in operations()}
    assert found == {key: operation_id for key, (operation_id, _) in EXPECTED_OPERATIONS.items()}
    for operation_id in found.values():
        assert re.fullmatch(r"[a-z]+(?:[A-Z][a-z]*)+", operation_id), operation_id


def test_each_operation_id_binds_its_handler() -> None:
    from tunegate.api.operations import HANDLERS, handler

    assert dict(HANDLERS) == dict(EXPECTED_OPERATIONS.values())
    for operation_id, dotted in EXPECTED_OPERATIONS.values():
        module, name = dotted.rsplit(".", 1)
        assert handler(operation_id) is getattr(importlib.import_module(module), name)
    with pytest.raises(ValueError, match="names no handler"):
        handler("createUnicorn")


def test_the_spec_declares_security_only_at_the_top() -> None:
    """tunegate.api.spec serves the top-level ``security`` as the server's keys make it; an
    operation's own ``security`` would be served unchanged, and could lie in one of the modes."""
    assert SPEC["security"] == [{}, {"bearerAuth": []}]  # the open server's, as served
    for path, method, op, _ in operations():
        assert "security" not in op, f"{method} {path}"


def test_every_operation_declares_the_error_responses() -> None:
    for path, method, op, _ in operations():
        responses = op["responses"]
        for status in ("400", "401", "404", "409", "413", "415", "429", "500", "507"):
            assert "$ref" in responses.get(status, {}), f"{method} {path} {status}"
            body = follow(responses[status])["content"]["application/json"]["schema"]
            assert body == {"$ref": "#/components/schemas/ErrorResponse"}
        if path.startswith("/fine_tuning/"):
            assert responses["501"] == {"$ref": "#/components/responses/GatewayNotImplemented"}
        else:
            assert "501" not in responses, f"{method} {path}"


def test_every_response_declares_x_request_id() -> None:
    for path, method, op, _ in operations():
        for status, response in op["responses"].items():
            headers = follow(response).get("headers", {})
            assert headers.get("x-request-id") == {"$ref": "#/components/headers/XRequestId"}, (
                f"{method} {path} {status}"
            )


def test_links_point_at_existing_operations() -> None:
    ids = OPERATION_IDS
    count = 0
    for _, _, op, _ in operations():
        for response in op["responses"].values():
            for link in follow(response).get("links", {}).values():
                assert link["operationId"] in ids
                count += 1
    assert count >= 14


def nullable_without_type(node: Any, where: str) -> Iterator[str]:
    if isinstance(node, dict):
        if node.get("nullable") and "type" not in node:
            yield where
        if "$ref" in node and len(node) > 1:
            yield f"{where} (keywords next to $ref are ignored in OpenAPI 3.0)"
        for key, value in node.items():
            yield from nullable_without_type(value, f"{where}.{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from nullable_without_type(value, f"{where}[{index}]")


def test_no_ineffective_keywords() -> None:
    assert list(nullable_without_type(SPEC["components"]["schemas"], "schemas")) == []
    assert list(nullable_without_type(SPEC["paths"], "paths")) == []


# Response objects list every key as required: tunegate always emits all of them.
# FineTuneMethod, FineTuningIntegration and Metadata are shared with requests and are exempt,
# as is an event's free-form `data`.
RESPONSE_SCHEMAS = [
    "FineTuningJob",
    "FineTuningJobEvent",
    "FineTuningJobCheckpoint",
    "FineTuningJobList",
    "FineTuningJobEventList",
    "FineTuningJobCheckpointList",
    "OpenAIFile",
    "FileList",
    "DeleteFileResponse",
    "Model",
    "ModelList",
    "DeleteModelResponse",
    "CreateChatCompletionResponse",
    "CreateChatCompletionStreamResponse",
    "CreateCompletionResponse",
    "CreateEmbeddingResponse",
    "Embedding",
    "ChatCompletionResponseMessage",
    "CompletionUsage",
    "ErrorResponse",
    "Error",
    "GatewayNotImplemented",
    "Upload",
    "UploadPart",
    "FineTuningCheckpointPermission",
    "FineTuningCheckpointPermissionList",
    "DeleteFineTuningCheckpointPermissionResponse",
    "Eval",
    "EvalList",
    "DeleteEvalResponse",
    "EvalRun",
    "EvalRunList",
    "DeleteEvalRunResponse",
    "EvalRunOutputItem",
    "EvalRunOutputItemList",
    "EvalApiError",
]
OPEN_OBJECTS = {"FineTuningJobEvent.data", "EvalRun.data_source"}


def missing_required(schema: dict[str, Any], where: str) -> Iterator[str]:
    if "$ref" in schema or where in OPEN_OBJECTS:
        return
    properties = schema.get("properties", {})
    missing = set(properties) - set(schema.get("required", []))
    if missing:
        yield f"{where}: {sorted(missing)}"
    for name, sub in properties.items():
        yield from missing_required(sub, f"{where}.{name}")


@pytest.mark.parametrize("name", RESPONSE_SCHEMAS)
def test_response_schemas_require_every_key(name: str) -> None:
    schema = SPEC["components"]["schemas"][name]
    assert list(missing_required(schema, name)) == []
