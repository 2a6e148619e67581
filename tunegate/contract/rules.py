"""tunegate's rules that openapi.yaml cannot state in JSON Schema, as a rewrite of the requests
schemathesis generates: what makes a schema-valid request acceptable to a real server.

Without them, schemathesis' ``positive_data_acceptance`` check counts the server's (documented)
400s for schema-valid requests as failures:

- a job's ``training_file`` / ``validation_file`` must name an uploaded ``fine-tune`` file, and
  ``model`` a base model the server has; a ``reinforcement`` method needs a grader whose
  every field checks out (a drawn one becomes a valid ``string_check``); hyperparameters given
  both at the top level and in ``method`` are refused; metadata keys are at most 64
  characters;
- a ``fine-tune`` upload must be JSONL; ``expires_after[anchor]`` and ``expires_after[seconds]``
  come together or not at all;
- an upload's ``part_ids`` must name its own parts, adding up to its ``bytes`` (and match
  ``md5`` when one is sent);
- base models cannot be deleted and have no adapter;
- an eval's testing criteria must be graders whose every field checks out, and a run's data
  source rows ``{"item": {...}}`` with a served model and a template or ``item.`` reference;
- a ``metadata[key]`` filter cannot carry brackets in its key (deepObject has no escaping);
- a live event stream resumes only after an event of its own job (``last_event_id``, the
  ``Last-Event-ID`` header), and takes no ``after`` (which pages the JSON list);
- chat and text completions refuse what tunegate cannot honour (``n`` above 8, ``best_of``
  other than 1, ``top_logprobs`` without ``logprobs``, ``echo``, ``suffix``, a JSON schema with
  a keyword llama.cpp cannot enforce, a forced ``tool_choice`` naming no offered function,
  ``stream_options`` without ``stream``, non-text content parts, tools without a function
  name, ``logit_bias`` keys that are not token ids of the model), so generated schemas become
  ``json_object``, forced choices ``auto`` and biases keep small token ids; the prompt
  must fit the model's context (the embedded model's is 2048 tokens), so conversations, tools
  and prompts are cut to ``MAX_PROMPT_BYTES``; and generation is kept to a few tokens (the
  model runs on CPU);
- a response (``POST /responses``, stateless) refuses what needs server state
  (``previous_response_id``, ``conversation``, ``prompt``, ``background``), hosted tools,
  ``top_logprobs``, and input items other than messages, function calls and their outputs,
  each with the fields its type needs: stateful parameters are dropped, tools kept only when
  they are named functions, input items become messages with text content, and the rest
  follows the chat completions' rules (``max_output_tokens`` is the token limit);
- a grader's fields are checked by tunegate itself (``tunegate.graders.parse``: the contract
  leaves ``grader`` an open object so that the 400 names the bad field), so a generated
  grader becomes a valid ``string_check`` (under the name drawn, when it drew one);
- embeddings need a served model, token ids inside its vocabulary and ``dimensions`` at most
  its width (the embedded model's: ``EMBEDDED_VOCABULARY``, ``EMBEDDED_WIDTH``), and each text
  within its context (cut to ``MAX_PROMPT_BYTES``); inputs are kept to ``MAX_EMBEDDING_INPUTS``
  (the model runs on CPU);
- a webhook endpoint's URL must be one the server may deliver to (public, resolvable, or in
  ``TUNEGATE_WEBHOOK_ALLOW_NETWORKS``) and answer its test event, and a signing secret must be
  ``whsec_`` and base64, and its event types those tunegate sends, so unknown event types are
  dropped (all of them are taken when none is left), a generated URL becomes the run's own
  receiver on 127.0.0.1 (the hooks start one that answers 200; a server checked from outside
  allows ``127.0.0.1/32`` for the run) and a generated secret is left out (the server makes
  one); an update follows the same rules for what it names, and a test event's type is one
  tunegate sends (schemathesis reaches both with the ids of endpoints it made).

Only positive cases are rewritten (a rewrite could repair the very value a negative case broke).
Two users: ``tunegate.contract.hooks`` (the hooks schemathesis.toml names, for a run from
outside against a real server) and ``tests/api/test_schemathesis.py`` (the in-process app).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from typing import Any

from tunegate.domain.job_requests import MAX_METADATA_KEY
from tunegate.domain.webhooks import EVENT_TYPES

# Operations that answer 400 for a base model (only fine-tuned models can be deleted or exported).
NO_BASE_MODELS = ("DELETE /models/{model}", "GET /models/{model}/adapter")
EXPIRES_AFTER = ("expires_after[anchor]", "expires_after[seconds]")
EVENTS = "GET /fine_tuning/jobs/{fine_tuning_job_id}/events"
# Tokens a generated completion may ask for: enough to see an answer, few enough to stay fast.
MAX_TOKENS = 4
# A prompt this long (as UTF-8 JSON) fits a 2048-token context even at a token per byte, with
# room for the chat template and the tool instructions it adds.
MAX_PROMPT_BYTES = 1200
# What a completable upload (see ``acceptable``) holds: one part, these bytes.
COMPLETABLE = b'{"n": 1}\n'
_REFUSED = {
    "POST /chat/completions": ("top_logprobs", "audio"),
    "POST /completions": ("echo", "suffix"),
}
MAX_CHOICES = 8  # tunegate.serving.completions.MAX_CHOICES
# What every drawn testing criterion of a positive eval becomes.
EVAL_CRITERION = {"type": "string_check", "name": "exact", "input": "{{ sample.output_text }}",
                  "reference": "{{ item.n }}", "operation": "eq"}
# logit_bias keys kept: token ids every vocabulary has (byte-level tokenizers start with 256).
MAX_BIASED_TOKEN = 255
GRADER_ROUTES = ("POST /fine_tuning/alpha/graders/run", "POST /fine_tuning/alpha/graders/validate")
VALID_GRADER = {"type": "string_check", "input": "{{sample.output_text}}",
                "reference": "expected", "operation": "eq"}
EMBEDDINGS = "POST /embeddings"
EMBEDDED_VOCABULARY = 49152  # token ids of the embedded SmolLM2 run from 0 to this - 1
EMBEDDED_WIDTH = 576  # the length of its embeddings: the most `dimensions` can ask
MAX_EMBEDDING_INPUTS = 4  # inputs per generated request, and tokens per token array: x 16
RESPONSES = "POST /responses"
WEBHOOK_ENDPOINTS = "POST /webhook_endpoints"
WEBHOOK_UPDATE = "POST /webhook_endpoints/{webhook_endpoint_id}"
WEBHOOK_TEST = "POST /webhook_endpoints/{webhook_endpoint_id}/test"
# Where a webhook endpoint points when the caller has no receiver: 127.0.0.1's discard port.
CONTRACT_WEBHOOK_URL = "http://127.0.0.1:9/tunegate-contract"
# What a response refuses (tunegate.api.responses): server state, and log probabilities.
_RESPONSE_REFUSED = ("previous_response_id", "conversation", "prompt", "background",
                     "top_logprobs")
# The token limits each generation body declares (the legacy completion has only max_tokens;
# an undeclared one is refused with 400 unknown_parameter).
_TOKEN_LIMITS = {
    "POST /chat/completions": ("max_tokens", "max_completion_tokens"),
    "POST /completions": ("max_tokens",),
}


def one_example() -> bytes:
    """A valid JSONL ``fine-tune`` file of one chat example: accepted at upload; a job on it fails
    validation at once (fewer than 10 examples), so no job of a fuzzing run ever trains."""
    return (json.dumps({"messages": [{"role": "user", "content": "Hi"},
                                     {"role": "assistant", "content": "Hello"}]}) + "\n").encode()


def is_positive(case: Any) -> bool:
    """Generated as valid, every part of it (a coverage-phase case can be negative in one part)."""
    meta = case.meta
    return meta is None or (meta.generation.mode.is_positive and not any(
        component.mode.is_negative for component in meta.components.values()))


def acceptable(case: Any, *, training_file: Callable[[], str], base_models: Sequence[str],
               training_content: bytes,
               completable_upload: Callable[[], tuple[str, list[str]]],
               webhook_url: str = CONTRACT_WEBHOOK_URL) -> None:
    """Make the positive ``case`` meet the rules above, in place.

    ``training_file()`` is the id of a ``fine-tune`` file on the server, ``base_models`` its base
    models (the first one is used), ``training_content`` what a ``fine-tune`` upload sends,
    ``completable_upload()`` a fresh pending upload holding one part of ``COMPLETABLE`` (its
    id and its part ids), ``webhook_url`` a receiver that answers webhook deliveries.
    """
    label = case.operation.label
    if label == EVENTS and _positive_but_headers(case):
        _no_resume_point(case)
    if not is_positive(case):
        return
    if label in NO_BASE_MODELS and case.path_parameters.get("model") in base_models:
        case.path_parameters["model"] = f"ft:{case.path_parameters['model']}:org-local::gone0000"
    if label == "GET /fine_tuning/jobs" and isinstance(case.query, dict):
        _plain_metadata_filter(case.query)
    body = case.body
    if not isinstance(body, dict):
        return
    if label == "POST /uploads/{upload_id}/complete" and isinstance(body.get("part_ids"), list):
        case.path_parameters["upload_id"], body["part_ids"] = completable_upload()
        if isinstance(body.get("md5"), str):
            body["md5"] = hashlib.md5(COMPLETABLE).hexdigest()
    elif label == "POST /files":
        _upload(body, training_content)
    elif label == "POST /fine_tuning/jobs":
        _job(body, training_file, base_models[0])
    elif label in _REFUSED:
        _generation(body, label, base_models[0])
    elif label == "POST /evals":
        _eval(body)
    elif label == "POST /evals/{eval_id}/runs":
        _eval_run(body, base_models[0])
    elif label == "POST /evals/{eval_id}":
        _plain_metadata(body)
    elif label == EMBEDDINGS:
        _embedding(body, base_models[0])
    elif label in GRADER_ROUTES and "grader" in body:
        drawn = body["grader"] if isinstance(body["grader"], dict) else {}
        name = drawn.get("name") if isinstance(drawn.get("name"), str) else "grader"
        body["grader"] = {**VALID_GRADER, "name": name}
    elif label == RESPONSES:
        _response(body, base_models[0])
    elif label in (WEBHOOK_ENDPOINTS, WEBHOOK_UPDATE):
        _webhook_endpoint(body, webhook_url, creating=label == WEBHOOK_ENDPOINTS)
    elif label == WEBHOOK_TEST and body.get("event_type") not in EVENT_TYPES:
        body["event_type"] = EVENT_TYPES[0]


def _webhook_endpoint(body: dict[str, Any], webhook_url: str, *, creating: bool) -> None:
    # An update may leave the URL out (kept); a creation must give one.
    if creating or "url" in body:
        body["url"] = webhook_url
    body.pop("signing_secret", None)
    if isinstance(body.get("event_types"), list):
        body["event_types"] = [e for e in body["event_types"] if e in EVENT_TYPES] or \
            list(EVENT_TYPES)


def _positive_but_headers(case: Any) -> bool:
    """Positive apart from a header marked negative: schemathesis' coverage phase "breaks"
    ``Last-Event-ID`` (a string of any shape) into ``0``, still a valid string, and then files
    the whole case as positive, so its query must follow the rules too."""
    meta = case.meta
    return meta is None or (meta.generation.mode.is_positive and not any(
        component.mode.is_negative for location, component in meta.components.items()
        if getattr(location, "value", location) != "header"))


def _no_resume_point(case: Any) -> None:
    # A drawn event id names no event of the job (400, tested in tests/api/test_event_stream.py).
    query = case.query if isinstance(case.query, dict) else {}
    query.pop("last_event_id", None)
    if query.get("stream") in (True, "true"):
        query.pop("after", None)
    if case.headers is not None:  # a dict, or schemathesis' own mapping of headers
        for name in [name for name in list(case.headers) if name.lower() == "last-event-id"]:
            del case.headers[name]


def _plain_metadata_filter(query: dict[str, Any]) -> None:
    # schemathesis draws the filter as an object or as ready-made `metadata[key]` entries.
    filters = query.get("metadata")
    if isinstance(filters, dict):
        query["metadata"] = {key: value for key, value in filters.items()
                             if "[" not in key and "]" not in key}
    for name in [name for name in query if name.startswith("metadata[")]:
        if any(bracket in name[len("metadata["):-1] for bracket in "[]"):
            del query[name]


def _upload(body: dict[str, Any], training_content: bytes) -> None:
    half_expiry = sum(name in body for name in EXPIRES_AFTER) == 1
    if half_expiry:
        body["expires_after[anchor]"] = "created_at"
        body["expires_after[seconds]"] = body.get("expires_after[seconds]", 3600)
    if "file" in body and (half_expiry or body.get("purpose") == "fine-tune"):
        # As text: schemathesis re-checks an edited body against the schema, and takes one
        # holding bytes for invalid (its validator cannot read binary), hence for a negative case.
        body["file"] = training_content.decode()


def _job(body: dict[str, Any], training_file: Callable[[], str], base_model: str) -> None:
    for key in ("training_file", "validation_file"):
        if isinstance(body.get(key), str):
            body[key] = training_file()
    if isinstance(body.get("model"), str) and body["model"]:
        body["model"] = base_model
    method = body.get("method")
    if isinstance(method, dict) and method.get("type") == "reinforcement":
        options = method.get("reinforcement")
        if not isinstance(options, dict):
            options = method["reinforcement"] = {}
        options["grader"] = EVAL_CRITERION
    if body.get("hyperparameters") and isinstance(method, dict) and (
            method.get("type") != "supervised"
            or (method.get("supervised") or {}).get("hyperparameters")):
        del body["hyperparameters"]
    _plain_metadata(body)


def _plain_metadata(body: dict[str, Any]) -> None:
    metadata = body.get("metadata")
    if isinstance(metadata, dict):
        body["metadata"] = {k: v for k, v in metadata.items() if len(k) <= MAX_METADATA_KEY}


def _eval(body: dict[str, Any]) -> None:
    """Criteria are checked field by field by the graders (a drawn ``string_check`` lacks its
    ``input``...): each becomes a valid one of its name; ``item_schema`` must be an object."""
    _plain_metadata(body)
    if isinstance(body.get("testing_criteria"), list):
        body["testing_criteria"] = [EVAL_CRITERION for _ in body["testing_criteria"]]
    config = body.get("data_source_config")
    if isinstance(config, dict) and not isinstance(config.get("item_schema"), dict):
        config["item_schema"] = {"type": "object"}


def _eval_run(body: dict[str, Any], base_model: str) -> None:
    """A run's rows must be ``{"item": {...}}`` objects, its model one the server serves and its
    messages a template or an ``item.`` reference: a drawn data source becomes a valid one of
    its type."""
    _plain_metadata(body)
    source = body.get("data_source")
    if not isinstance(source, dict):
        return
    source["source"] = {"type": "file_content", "content": [{"item": {"n": 1}}]}
    if source.get("type") == "completions":
        source["model"] = base_model
        source["input_messages"] = {"type": "template",
                                    "template": [{"role": "user", "content": "{{ item.n }}"}]}
        source["sampling_params"] = {"max_completion_tokens": MAX_TOKENS}
    else:
        for name in ("model", "input_messages", "sampling_params"):
            source.pop(name, None)


def _generation(body: dict[str, Any], label: str, base_model: str) -> None:
    if isinstance(body.get("model"), str):
        body["model"] = base_model
    for name in _REFUSED[label]:
        body.pop(name, None)
    if isinstance(body.get("n"), int) and body["n"] > MAX_CHOICES:
        body["n"] = MAX_CHOICES
    if body.get("best_of") not in (None, 1):
        body["best_of"] = 1
    response_format = body.get("response_format")
    if isinstance(response_format, dict) and response_format.get("type") == "json_schema":
        body["response_format"] = {"type": "json_object"}
    if not body.get("stream"):
        body.pop("stream_options", None)
    if isinstance(body.get("logit_bias"), dict):
        body["logit_bias"] = {key: bias for key, bias in body["logit_bias"].items()
                              if key.isascii() and key.isdigit() and int(key) <= MAX_BIASED_TOKEN}
    for name in ("tool_choice", "function_call"):
        if body.get(name) not in (None, "auto", "none"):
            del body[name]
    for name in ("tools", "functions"):
        if isinstance(body.get(name), list):
            body[name] = [tool for tool in body[name] if _named_function(tool, name)] or None
    for message in body.get("messages") or []:
        if isinstance(message, dict) and isinstance(message.get("content"), list):
            message["content"] = [{"type": "text", "text": str(part.get("text", ""))}
                                  for part in message["content"] if isinstance(part, dict)]
    for name in _TOKEN_LIMITS[label]:
        if body.get(name) is None or body[name] > MAX_TOKENS:
            body[name] = MAX_TOKENS
    _fit_the_context(body)


def _size(value: Any) -> int:
    return len(json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass"))


def _fit_the_context(body: dict[str, Any]) -> None:
    """Cut the prompt (tools first, then the oldest messages) to ``MAX_PROMPT_BYTES``."""
    if isinstance(body.get("prompt"), str):
        prompt = body["prompt"]
        while _size(prompt) > MAX_PROMPT_BYTES:
            prompt = prompt[:len(prompt) // 2]
        body["prompt"] = prompt
        return
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return
    parts = (messages, body.get("tools"), body.get("functions"))
    if sum(map(_size, parts)) <= MAX_PROMPT_BYTES:
        return
    body.pop("tools", None)
    body.pop("functions", None)
    body.pop("tool_choice", None)
    while len(messages) > 1 and _size(messages) > MAX_PROMPT_BYTES:
        del messages[0]
    if _size(messages) > MAX_PROMPT_BYTES:
        messages[0] = {"role": "user", "content": "Hello"}


def _named_function(tool: Any, where: str) -> bool:
    function = tool if where == "functions" else (tool or {}).get("function")
    return (isinstance(function, dict) and bool(function.get("name"))
            and (where == "functions" or tool.get("type", "function") == "function"))


def _embedding(body: dict[str, Any], base_model: str) -> None:
    if isinstance(body.get("model"), str):
        body["model"] = base_model
    if _is_int(body.get("dimensions")) and body["dimensions"] > EMBEDDED_WIDTH:
        body["dimensions"] = EMBEDDED_WIDTH
    value = body.get("input")
    if isinstance(value, str):
        body["input"] = _short_text(value)
    elif isinstance(value, list):
        body["input"] = [_embedding_input(item) for item in value[:MAX_EMBEDDING_INPUTS]]


def _embedding_input(item: Any) -> Any:
    if isinstance(item, str):
        return _short_text(item)
    if _is_int(item):
        return item % EMBEDDED_VOCABULARY
    if isinstance(item, list):
        return [_embedding_input(token) for token in item[:16 * MAX_EMBEDDING_INPUTS]]
    return item


def _short_text(text: str) -> str:
    while _size(text) > MAX_PROMPT_BYTES:
        text = text[:len(text) // 2]
    return text


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
def _response(body: dict[str, Any], base_model: str) -> None:
    if isinstance(body.get("model"), str):
        body["model"] = base_model
    for name in _RESPONSE_REFUSED:
        body.pop(name, None)
    if isinstance(body.get("tools"), list):
        body["tools"] = [tool for tool in body["tools"] if isinstance(tool, dict)
                         and tool.get("type") == "function" and tool.get("name")] or None
    if body.get("tool_choice") not in (None, "auto", "none"):
        del body["tool_choice"]
    text = body.get("text")
    if isinstance(text, dict) and isinstance(text.get("format"), dict) and (
            text["format"].get("type") == "json_schema"):
        text["format"] = {"type": "json_object"}
    _plain_metadata(body)
    if isinstance(body.get("input"), list):
        body["input"] = [_input_message(item) for item in body["input"]]
    if body.get("max_output_tokens") is None or body["max_output_tokens"] > MAX_TOKENS:
        body["max_output_tokens"] = MAX_TOKENS
    _fit_the_response(body)


def _input_message(item: Any) -> dict[str, Any]:
    """An input item as a message (the one item type every shape of conversation accepts)."""
    item = item if isinstance(item, dict) else {}
    role = item.get("role") if item.get("role") in ("user", "assistant", "system",
                                                    "developer") else "user"
    content = item.get("content")
    if isinstance(content, list):
        content = [{"type": "input_text", "text": str(part.get("text", ""))}
                   for part in content if isinstance(part, dict)]
    elif not isinstance(content, str):
        content = "Hello"
    return {"role": role, "content": content}


def _fit_the_response(body: dict[str, Any]) -> None:
    """Cut the prompt (tools, then the oldest input items, then the instructions) to
    ``MAX_PROMPT_BYTES``."""
    parts = ("instructions", "input", "tools")
    if sum(_size(body.get(name)) for name in parts) <= MAX_PROMPT_BYTES:
        return
    body.pop("tools", None)
    body.pop("tool_choice", None)
    if isinstance(body.get("instructions"), str) and _size(body["instructions"]) > 200:
        body["instructions"] = body["instructions"][:50]
    input = body.get("input")
    if isinstance(input, list):
        while len(input) > 1 and _size(input) > MAX_PROMPT_BYTES:
            del input[0]
        if _size(input) > MAX_PROMPT_BYTES:
            input[0] = {"role": "user", "content": "Hello"}
    elif isinstance(input, str) and _size(input) > MAX_PROMPT_BYTES:
        body["input"] = "Hello"
