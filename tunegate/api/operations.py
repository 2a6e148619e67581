"""Which handler answers which operation: openapi.yaml's operationIds are OpenAI's names, so a
client generated from the contract reads like OpenAI's (``create_fine_tuning_job``, not
``handlers_fine_tuning_create_job``); this table binds each to its function in ``handlers/``.

The functions are named by their dotted path (the API layer never imports ``handlers``) and
looked up by connexion's resolver when the app is built: a name that does not resolve fails
``create_app``, not a request.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from connexion.resolver import Resolver
from connexion.utils import get_function_from_name

# OpenAI's operationIds (shared/reference/openai-finetuning-subset.yaml, and OpenAI's full spec
# for the two inference operations); tunegate's own routes are named in the same style.
HANDLERS: Mapping[str, str] = {
    "createFineTuningJob": "handlers.fine_tuning.create_job",
    "listPaginatedFineTuningJobs": "handlers.fine_tuning.list_jobs",
    "retrieveFineTuningJob": "handlers.fine_tuning.retrieve_job",
    "cancelFineTuningJob": "handlers.fine_tuning.cancel_job",
    "pauseFineTuningJob": "handlers.fine_tuning.pause_job",
    "resumeFineTuningJob": "handlers.fine_tuning.resume_job",
    "listFineTuningEvents": "handlers.fine_tuning.list_events",
    "listFineTuningJobCheckpoints": "handlers.fine_tuning.list_checkpoints",
    "createFile": "handlers.files.create_file",
    "listFiles": "handlers.files.list_files",
    "retrieveFile": "handlers.files.retrieve_file",
    "deleteFile": "handlers.files.delete_file",
    "downloadFile": "handlers.files.download_file",
    "listModels": "handlers.models.list_models",
    "retrieveModel": "handlers.models.retrieve_model",
    "deleteModel": "handlers.models.delete_model",
    "downloadModelAdapter": "handlers.models.download_adapter",  # tunegate's own
    "createChatCompletion": "handlers.inference.create_chat_completion",
    "listChatCompletions": "handlers.stored_completions.list_completions",
    "getChatCompletion": "handlers.stored_completions.retrieve_completion",
    "updateChatCompletion": "handlers.stored_completions.update_completion",
    "deleteChatCompletion": "handlers.stored_completions.delete_completion",
    "getChatCompletionMessages": "handlers.stored_completions.list_messages",
    "createCompletion": "handlers.inference.create_completion",
    "createEmbedding": "handlers.inference.create_embedding",
    "createResponse": "handlers.responses.create_response",
    "retrieveResponse": "handlers.responses.retrieve_response",
    "deleteResponse": "handlers.responses.delete_response",
    "createUpload": "handlers.uploads.create_upload",
    "addUploadPart": "handlers.uploads.add_upload_part",
    "completeUpload": "handlers.uploads.complete_upload",
    "cancelUpload": "handlers.uploads.cancel_upload",
    "createFineTuningCheckpointPermission": "handlers.permissions.create_permissions",
    "listFineTuningCheckpointPermissions": "handlers.permissions.list_permissions",
    "deleteFineTuningCheckpointPermission": "handlers.permissions.delete_permission",
    "listEvals": "handlers.evals.list_evals",
    "createEval": "handlers.evals.create_eval",
    "getEval": "handlers.evals.get_eval",
    "updateEval": "handlers.evals.update_eval",
    "deleteEval": "handlers.evals.delete_eval",
    "getEvalRuns": "handlers.evals.list_runs",
    "createEvalRun": "handlers.evals.create_run",
    "getEvalRun": "handlers.evals.get_run",
    "cancelEvalRun": "handlers.evals.cancel_run",
    "cancelEvalRunByPath": "handlers.evals.cancel_run",  # tunegate's name: newer SDKs' path
    "deleteEvalRun": "handlers.evals.delete_run",
    "getEvalRunOutputItems": "handlers.evals.list_output_items",
    "getEvalRunOutputItem": "handlers.evals.get_output_item",
    "runGrader": "handlers.graders.run_grader",
    "validateGrader": "handlers.graders.validate_grader",
    "createWebhookEndpoint": "handlers.webhooks.create_endpoint",
    "listWebhookEndpoints": "handlers.webhooks.list_endpoints",
    "retrieveWebhookEndpoint": "handlers.webhooks.retrieve_endpoint",
    "deleteWebhookEndpoint": "handlers.webhooks.delete_endpoint",
    "updateWebhookEndpoint": "handlers.webhooks.update_endpoint",
    "rotateWebhookEndpointSecret": "handlers.webhooks.rotate_secret",
    "testWebhookEndpoint": "handlers.webhooks.test_endpoint",
    "listWebhookDeliveries": "handlers.webhooks.list_deliveries",  # tunegate's own
}


def handler(operation_id: str) -> Callable[..., Any]:
    """The function for ``operation_id``: from the table, or (an operation not in it yet) the
    operationId itself read as a dotted path, connexion's default."""
    name = HANDLERS.get(operation_id, operation_id)
    if "." not in name:
        # connexion's resolver turns ValueError into its ResolverError (KeyError would escape).
        raise ValueError(f"operationId {operation_id!r} names no handler: add it to "
                         "tunegate.api.operations.HANDLERS")
    return get_function_from_name(name)  # type: ignore[no-any-return]


def resolver() -> Resolver:
    return Resolver(function_resolver=handler)
