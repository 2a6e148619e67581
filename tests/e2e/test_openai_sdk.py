"""The official ``openai`` SDK against a real ``tunegate serve`` subprocess.

Every scenario runs twice: with the SDK's default loose parsing and with
``_strict_response_validation=True``, which validates each response against the SDK's own types
(so a missing key, a wrong type or an unknown enum value fails the test).

Servers are module-scoped and shared by tests that cannot disturb each other (each test creates
its own files and jobs and asserts only about those, or about whole listings it reads itself):
one default server, two gateway-mode servers (flag and environment variable) and one with a tiny
upload limit.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from openai import OpenAI
from openai.types import FileObject, Model
from openai.types.fine_tuning import (
    FineTuningJob,
    FineTuningJobEvent,
    ReinforcementHyperparameters,
    ReinforcementMethod,
)
from openai.types.graders import StringCheckGrader

from tests.conftest import (
    TEST_DATA,
    VALIDATE_ONLY,
    Server,
    chat_lines,
    start_server_afresh,
    stop_server,
)
from tests.helpers import sdk_create_job, sdk_upload, wait_for_status
from tests.servers import sdk_client

pytestmark = pytest.mark.e2e

BASE_MODEL = "SmolLM2-135M-Instruct"
GATEWAY_BODY = {"detail": "Fine-tuning is not implemented in the local llama.cpp gateway"}
GSM8K = TEST_DATA / "microsoft-foundry__Text-GSM8K__chat_validation.jsonl"
TOY_CHAT = TEST_DATA / "openai-cookbook__toy_chat_fine_tuning.jsonl"
# Where these servers' jobs wait: the worker only validates, so a job goes from here to
# `queued` or `failed` and any other status on the way is a bug.
VALIDATING = ("validating_files",)


# Servers ------------------------------------------------------------------------------------


def _start(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> Server:
    """``start_server`` with no TUNEGATE_* inherited from the developer's shell, and a worker
    that validates files but does not train (these tests watch jobs wait in ``queued``).

    (conftest's autouse isolation is function-scoped, so it has not run yet for module fixtures.)
    """
    return start_server_afresh(tmp_path, *args, env={**VALIDATE_ONLY, **(env or {})})


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The default server: fine-tuning enabled, embedded worker."""
    running = _start(tmp_path_factory.mktemp("sdk-main"))
    yield running
    stop_server(running)


@pytest.fixture(scope="module", params=["flag", "env"])
def gateway(request: pytest.FixtureRequest,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """Gateway mode, switched on by ``--fine-tuning disabled`` or ``TUNEGATE_FINE_TUNING``."""
    tmp = tmp_path_factory.mktemp(f"sdk-gateway-{request.param}")
    if request.param == "flag":
        running = _start(tmp, "--fine-tuning", "disabled")
    else:
        running = _start(tmp, env={"TUNEGATE_FINE_TUNING": "disabled"})
    yield running
    stop_server(running)


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server that refuses request bodies over 1000 bytes."""
    running = _start(tmp_path_factory.mktemp("sdk-small"), "--max-upload-bytes", "1000")
    yield running
    stop_server(running)


# Clients ------------------------------------------------------------------------------------


class Requests:
    """Every HTTP request a client sent (retries included), via an httpx event hook."""

    def __init__(self) -> None:
        self.sent: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> None:
        self.sent.append(request)

    def count(self, method: str, path_suffix: str) -> int:
        return sum(1 for r in self.sent if r.method == method and r.url.path.endswith(path_suffix))


MakeClient = Callable[..., OpenAI]


@pytest.fixture(params=["loose", "strict"])
def strict(request: pytest.FixtureRequest) -> bool:
    return bool(request.param == "strict")


@pytest.fixture
def make_client(strict: bool) -> Iterator[MakeClient]:
    """``make_client(server, requests=None, **options)``: an SDK client in this test's mode."""
    clients: list[OpenAI] = []

    def make(server: Server, requests: Requests | None = None, **options: Any) -> OpenAI:
        if requests is not None:
            options["http_client"] = openai.DefaultHttpxClient(
                event_hooks={"request": [requests]})
        client = sdk_client(server, api_key="local",
                        _strict_response_validation=strict, **options)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def client(srv: Server, make_client: MakeClient) -> OpenAI:
    return make_client(srv)


# Helpers ------------------------------------------------------------------------------------


def tag() -> str:
    return uuid.uuid4().hex[:12]


def message(error: openai.APIStatusError) -> str:
    """Our error message: the SDK's ``str``/``.message`` prefix it with the status."""
    assert isinstance(error.body, dict), error.body
    ours = error.body["message"]
    assert error.message == f"Error code: {error.status_code} - {ours}"
    assert error.request_id == error.response.headers["x-request-id"]
    return str(ours)


def assert_request_id(value: str | None) -> None:
    assert value is not None and value.startswith("req_"), value


# Files --------------------------------------------------------------------------------------


def test_file_upload_retrieve_content_delete(client: OpenAI, srv: Server) -> None:
    content = chat_lines(12)
    before = int(time.time())
    uploaded = sdk_upload(client, content, name="my train.jsonl")
    assert isinstance(uploaded, FileObject)
    assert uploaded.id.startswith("file-")
    assert uploaded.object == "file"
    assert uploaded.bytes == len(content)
    assert uploaded.filename == "my train.jsonl"
    assert uploaded.purpose == "fine-tune"
    assert uploaded.status == "processed"
    assert uploaded.expires_at is None
    assert before - 1 <= uploaded.created_at <= int(time.time()) + 1
    assert_request_id(uploaded._request_id)

    retrieved = client.files.retrieve(uploaded.id)
    assert retrieved.model_dump() == uploaded.model_dump()
    assert client.files.content(uploaded.id).read() == content

    stored = srv.data_dir / "files" / uploaded.id
    assert stored.read_bytes() == content
    deleted = client.files.delete(uploaded.id)
    assert (deleted.id, deleted.deleted, deleted.object) == (uploaded.id, True, "file")
    assert not stored.exists()
    assert not [p for p in (srv.data_dir / "files").iterdir() if uploaded.id in p.name]

    with pytest.raises(openai.NotFoundError) as caught:
        client.files.retrieve(uploaded.id)
    assert message(caught.value) == f"No such File object: {uploaded.id}"
    assert caught.value.status_code == 404
    assert_request_id(caught.value.request_id)
    with pytest.raises(openai.NotFoundError):
        client.files.content(uploaded.id)
    with pytest.raises(openai.NotFoundError):
        client.files.delete(uploaded.id)


def test_a_public_data_file_is_served_back_byte_identical(client: OpenAI) -> None:
    original = GSM8K.read_bytes()
    uploaded = client.files.create(file=GSM8K, purpose="fine-tune")  # a Path, as users pass it
    assert uploaded.filename == GSM8K.name
    assert uploaded.bytes == len(original) == GSM8K.stat().st_size
    assert client.files.content(uploaded.id).read() == original


def test_file_expires_after(client: OpenAI) -> None:
    uploaded = client.files.create(file=("e.jsonl", chat_lines(10)), purpose="fine-tune",
                                   expires_after={"anchor": "created_at", "seconds": 3600})
    assert uploaded.expires_at == uploaded.created_at + 3600
    assert client.files.retrieve(uploaded.id).expires_at == uploaded.created_at + 3600


def test_file_list_auto_paging(client: OpenAI, srv: Server,
                               make_client: MakeClient) -> None:
    mine = [sdk_upload(client, chat_lines(10, start=i), name=f"page-{i}.jsonl").id
            for i in range(5)]

    requests = Requests()
    counted = make_client(srv, requests)
    seen = [f.id for f in counted.files.list(limit=2)]
    pages = requests.count("GET", "/files")
    ascending = [f.id for f in counted.files.list(limit=2, order="asc")]

    # Every file once, newest first, and the same as one big page.
    assert len(seen) == len(set(seen))
    assert seen == sorted(seen, reverse=True)
    assert seen == [f.id for f in client.files.list(limit=10000).data]
    assert [i for i in seen if i in mine] == mine[::-1]
    assert pages >= 3  # five of ours alone need three pages of two
    assert ascending == seen[::-1]

    first = client.files.list(limit=2)
    assert len(first.data) == 2 and first.has_more is True
    assert first.data[0].id == seen[0]
    assert [f.id for f in client.files.list(limit=2, after=mine[2]).data] == mine[1::-1]
    last = client.files.list(after=seen[-1])
    assert last.data == [] and last.has_more is False


def test_file_list_filters_by_purpose(client: OpenAI) -> None:
    kept = client.files.create(file=("notes.txt", b"not jsonl at all\x00"), purpose="user_data")
    listed = [f.id for f in client.files.list(purpose="user_data")]
    assert kept.id in listed
    assert all(f.purpose == "fine-tune" for f in client.files.list(purpose="fine-tune"))
    assert client.files.content(kept.id).read() == b"not jsonl at all\x00"


# Jobs ---------------------------------------------------------------------------------------


def test_job_create_fields_and_validation_to_queued(client: OpenAI) -> None:
    training = sdk_upload(client, chat_lines(12))
    marker = tag()
    before = int(time.time())
    job = sdk_create_job(client, training.id, suffix="my-suffix", seed=42,
                  metadata={"suite": "sdk", "marker": marker},
                  method={"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 2}}})
    assert isinstance(job, FineTuningJob)
    assert job.id.startswith("ftjob-")
    assert job.object == "fine_tuning.job"
    assert job.model == BASE_MODEL
    assert job.status == "validating_files"
    assert job.training_file == training.id
    assert job.validation_file is None
    assert job.user_provided_suffix == "my-suffix"
    assert job.seed == 42
    assert job.metadata == {"suite": "sdk", "marker": marker}
    assert before - 1 <= job.created_at <= int(time.time()) + 1
    assert isinstance(job.organization_id, str) and job.organization_id
    assert (job.fine_tuned_model, job.finished_at, job.error, job.trained_tokens) == (
        None, None, None, None)
    assert job.estimated_finish is None
    assert job.result_files == []
    assert job.method is not None and job.method.type == "supervised"
    assert job.method.supervised is not None
    hyper = job.method.supervised.hyperparameters
    assert hyper is not None
    assert (hyper.n_epochs, hyper.batch_size, hyper.learning_rate_multiplier) == (2, "auto", "auto")
    assert job.hyperparameters.n_epochs == 2
    assert_request_id(job._request_id)

    queued = wait_for_status(client, job.id, "queued", "failed", passing=VALIDATING)
    assert queued.status == "queued", queued.error
    assert queued.error is None and queued.finished_at is None
    unchanged = {"status", "_request_id"}
    assert {k: v for k, v in queued.model_dump().items() if k not in unchanged} == {
        k: v for k, v in job.model_dump().items() if k not in unchanged}


def test_job_list_auto_paging_and_metadata_filter(client: OpenAI, srv: Server,
                                                  make_client: MakeClient) -> None:
    training = sdk_upload(client, chat_lines(10))
    marker = tag()
    mine = [sdk_create_job(client, training.id, metadata={"marker": marker, "n": str(i)}).id
            for i in range(3)]
    other = sdk_create_job(client, training.id, metadata={"marker": tag()}).id

    requests = Requests()
    counted = make_client(srv, requests)
    seen = [j.id for j in counted.fine_tuning.jobs.list(limit=2)]
    pages = requests.count("GET", "/fine_tuning/jobs")
    assert len(seen) == len(set(seen))
    assert seen == sorted(seen, reverse=True)
    assert pages >= 2 and pages >= len(seen) // 2
    assert [i for i in seen if i in mine + [other]] == [other, *mine[::-1]]

    filtered = list(client.fine_tuning.jobs.list(metadata={"marker": marker}, limit=2))
    assert [j.id for j in filtered] == mine[::-1]
    assert all(j.metadata is not None and j.metadata["marker"] == marker for j in filtered)
    assert [j.id for j in client.fine_tuning.jobs.list(metadata={"marker": marker, "n": "1"})] == [
        mine[1]]
    assert list(client.fine_tuning.jobs.list(metadata={"marker": "no-such-" + marker})) == []
    end = client.fine_tuning.jobs.list(after=seen[-1])
    assert end.data == [] and end.has_more is False


def test_job_events_paging_and_empty_checkpoints(client: OpenAI, srv: Server,
                                                 make_client: MakeClient) -> None:
    training = sdk_upload(client, chat_lines(10))
    job = wait_for_status(client, sdk_create_job(client, training.id).id, "queued",
                          passing=VALIDATING)
    expected = [
        "Files validated, moving job to queued state",
        "Memory estimate: ",  # the worker's plan (tunegate.worker.memory_plan), by its start
        f"Validating training file: {training.id}",
        f"Created fine-tuning job: {job.id}",
    ]

    requests = Requests()
    counted = make_client(srv, requests)
    events = list(counted.fine_tuning.jobs.list_events(job.id, limit=1))
    assert [e.message[:len(text)] for e, text in zip(events, expected, strict=True)] == expected
    assert requests.count("GET", "/events") == 4  # one event a page, the last says has_more false
    assert all(isinstance(e, FineTuningJobEvent) for e in events)
    assert all(e.object == "fine_tuning.job.event" and e.level == "info" for e in events)
    assert [e.id for e in events] == sorted((e.id for e in events), reverse=True)
    assert [e.created_at for e in events] == sorted((e.created_at for e in events), reverse=True)

    page = client.fine_tuning.jobs.list_events(job.id, limit=1)
    assert page.has_more is True and [e.message for e in page.data] == expected[:1]
    following = page.get_next_page()
    assert [e.message[:len(expected[1])] for e in following.data] == expected[1:2]
    assert [e.id for e in client.fine_tuning.jobs.list_events(job.id).data] == [
        e.id for e in events]

    checkpoints = client.fine_tuning.jobs.checkpoints.list(job.id)
    assert checkpoints.data == [] and checkpoints.has_more is False
    assert list(client.fine_tuning.jobs.checkpoints.list(job.id, limit=1)) == []


def test_cancel_then_cancel_again_is_one_409_without_retries(
        srv: Server, make_client: MakeClient) -> None:
    requests = Requests()
    client = make_client(srv, requests)  # the SDK's default retry policy (two retries)
    assert client.max_retries == 2
    training = sdk_upload(client, chat_lines(10))
    job = sdk_create_job(client, training.id)

    cancelled = client.fine_tuning.jobs.cancel(job.id)
    assert cancelled.status == "cancelled"
    assert cancelled.finished_at is not None
    assert_request_id(cancelled._request_id)

    with pytest.raises(openai.ConflictError) as caught:
        client.fine_tuning.jobs.cancel(job.id)
    error = caught.value
    assert error.status_code == 409
    assert message(error) == (f"Fine-tuning job {job.id} has already been cancelled and cannot "
                              "be cancelled.")
    assert error.code == "invalid_job_status"
    assert error.param == "fine_tuning_job_id"
    assert_request_id(error.request_id)
    # Not resent: a 409 here can never turn into a success, so the server says not to retry.
    assert requests.count("POST", f"/{job.id}/cancel") == 2
    assert error.response.headers.get("x-should-retry") == "false"

    messages = [e.message for e in client.fine_tuning.jobs.list_events(job.id)]
    assert messages.count("Fine-tuning job cancelled") == 1
    assert messages[0] == "Fine-tuning job cancelled"
    # The worker does not move a cancelled job on.
    time.sleep(0.6)
    assert client.fine_tuning.jobs.retrieve(job.id).status == "cancelled"


def test_pause_and_resume_a_queued_job(client: OpenAI) -> None:
    training = sdk_upload(client, chat_lines(10))
    job = wait_for_status(client, sdk_create_job(client, training.id).id, "queued",
                          passing=VALIDATING)

    if client._strict_response_validation:
        # OpenAI returns "paused", but the SDK's status Literal lacks it: strict parsing refuses
        # the (correct) answer. The raw response still carries it.
        with pytest.raises(openai.APIResponseValidationError):
            client.fine_tuning.jobs.pause(job.id)
        raw = client.fine_tuning.jobs.with_raw_response.retrieve(job.id)
        assert raw.http_response.json()["status"] == "paused"
    else:
        paused = client.fine_tuning.jobs.pause(job.id)
        assert paused.status == "paused"
        assert client.fine_tuning.jobs.retrieve(job.id).status == "paused"

    with pytest.raises(openai.ConflictError) as caught:
        client.fine_tuning.jobs.pause(job.id)
    assert message(caught.value) == f"Fine-tuning job {job.id} is paused and cannot be paused."

    resumed = client.fine_tuning.jobs.resume(job.id)
    assert resumed.status == "queued"
    assert client.fine_tuning.jobs.retrieve(job.id).status == "queued"
    with pytest.raises(openai.ConflictError) as caught:
        client.fine_tuning.jobs.resume(job.id)
    assert message(caught.value).startswith(
        f"Fine-tuning job {job.id} is queued and cannot be resumed")
    messages = [e.message for e in client.fine_tuning.jobs.list_events(job.id)]
    assert messages[:2] == ["Fine-tuning job resumed, moving job to queued state",
                            "Fine-tuning job paused"]


# Validation failures (asynchronous, in job.error) ------------------------------------------


def test_cookbook_toy_file_fails_with_invalid_n_examples(client: OpenAI) -> None:
    training = client.files.create(file=TOY_CHAT, purpose="fine-tune")  # valid JSONL: accepted
    job = sdk_create_job(client, training.id)
    assert job.status == "validating_files"

    failed = wait_for_status(client, job.id, "failed", "queued", passing=VALIDATING)
    assert failed.status == "failed"
    assert failed.error is not None
    assert failed.error.code == "invalid_n_examples"
    assert failed.error.param == "training_file"
    assert failed.error.message == (
        "Training file has 5 example(s), but must have at least 10 examples")
    assert failed.finished_at is not None
    assert failed.fine_tuned_model is None
    events = list(client.fine_tuning.jobs.list_events(job.id))
    assert (events[0].level, events[0].message) == ("error", failed.error.message)


def test_malformed_example_on_line_12_fails_with_invalid_training_file(client: OpenAI) -> None:
    broken = {"messages": [{"role": "user", "content": "Say something."},
                           {"role": "assistant", "content": ""}]}
    content = chat_lines(11) + json.dumps(broken).encode() + b"\n" + chat_lines(5, start=20)
    training = sdk_upload(client, content)  # still JSONL of objects: the upload is accepted
    job = sdk_create_job(client, training.id)

    failed = wait_for_status(client, job.id, "failed", "queued", passing=VALIDATING)
    assert failed.status == "failed"
    assert failed.error is not None
    assert failed.error.code == "invalid_training_file"
    assert failed.error.param == "training_file"
    assert "Line 12" in failed.error.message
    assert "assistant" in failed.error.message


# Errors -------------------------------------------------------------------------------------


def test_unknown_training_file_is_a_400(client: OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        sdk_create_job(client, "file-doesnotexist")
    error = caught.value
    assert error.param == "training_file"
    assert error.type == "invalid_request_error"
    assert message(error) == "invalid training_file: no such file file-doesnotexist"
    assert_request_id(error.request_id)


def test_training_file_with_wrong_purpose_is_a_400(client: OpenAI) -> None:
    other = client.files.create(file=("notes.txt", b"hello"), purpose="user_data")
    with pytest.raises(openai.BadRequestError) as caught:
        sdk_create_job(client, other.id)
    assert caught.value.param == "training_file"
    assert "purpose 'user_data'" in message(caught.value)


def test_unknown_model_is_a_400_listing_the_available_ones(client: OpenAI) -> None:
    training = sdk_upload(client, chat_lines(10))
    with pytest.raises(openai.BadRequestError) as caught:
        client.fine_tuning.jobs.create(model="gpt-9", training_file=training.id)
    error = caught.value
    assert error.param == "model"
    assert message(error).startswith("Model gpt-9 is not available for fine-tuning")
    assert BASE_MODEL in message(error)
    assert_request_id(error.request_id)


def test_retrieve_unknown_job_is_a_404(client: OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client.fine_tuning.jobs.retrieve("ftjob-doesnotexist")
    assert message(caught.value) == "No such fine-tuning job: ftjob-doesnotexist"
    assert_request_id(caught.value.request_id)
    for call in (client.fine_tuning.jobs.cancel, client.fine_tuning.jobs.list_events,
                 client.fine_tuning.jobs.checkpoints.list):
        with pytest.raises(openai.NotFoundError):
            call("ftjob-doesnotexist")


def test_reinforcement_job_with_the_sdks_own_types(client: OpenAI) -> None:
    """The SDK's reinforcement types in, OpenAI's method echoed back (strict parsing too); the
    worker then checks the file as RFT prompts: a chat file fails at its first line."""
    lines = "".join(json.dumps({"messages": [{"role": "user", "content": f"{n} + {n}?"}],
                                "answer": str(2 * n)}) + "\n" for n in range(10))
    grader = StringCheckGrader(type="string_check", name="exact",
                               input="{{sample.output_text}}", reference="{{item.answer}}",
                               operation="eq")
    method = {"type": "reinforcement", "reinforcement": ReinforcementMethod(
        grader=grader, hyperparameters=ReinforcementHyperparameters(reasoning_effort="low",
                                                                    compute_multiplier=2.0),
    ).model_dump(exclude_none=True)}
    job = sdk_create_job(client, sdk_upload(client, lines.encode()).id, method=method)
    assert job.method is not None and job.method.type == "reinforcement"
    echoed = job.method.reinforcement
    assert echoed is not None and echoed.grader == grader
    assert echoed.hyperparameters is not None
    assert (echoed.hyperparameters.reasoning_effort, echoed.hyperparameters.compute_multiplier,
            echoed.hyperparameters.n_epochs) == ("low", 2.0, "auto")
    assert wait_for_status(client, job.id, "queued", "failed", passing=VALIDATING).status == \
        "queued"
    chat = sdk_create_job(client, sdk_upload(client, chat_lines(10)).id, method=method)
    failed = wait_for_status(client, chat.id, "queued", "failed", passing=VALIDATING)
    assert failed.error is not None and failed.error.param == "training_file"
    assert "Line 1: the last message must be the user's" in failed.error.message


def test_a_reinforcement_grader_naming_no_served_model_is_a_400(client: OpenAI) -> None:
    training = sdk_upload(client, chat_lines(10))
    with pytest.raises(openai.BadRequestError) as caught:
        sdk_create_job(client, training.id, method={
            "type": "reinforcement",
            "reinforcement": {"grader": {"type": "score_model", "name": "judge",
                                         "model": "gpt-nope", "input": [
                                             {"role": "user", "content": "{{sample.output_text}}"}]}},
        })
    assert caught.value.param == "method.reinforcement.grader.model"
    assert caught.value.code == "model_not_found"
    assert_request_id(caught.value.request_id)


def test_bad_hyperparameter_is_a_400_naming_the_field(client: OpenAI) -> None:
    training = sdk_upload(client, chat_lines(10))
    with pytest.raises(openai.BadRequestError) as caught:
        sdk_create_job(client, training.id,
                method={"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 0}}})
    assert caught.value.param is not None and "n_epochs" in caught.value.param


def test_request_ids_differ_per_request(client: OpenAI) -> None:
    first = client.models.retrieve(BASE_MODEL)
    second = client.models.retrieve(BASE_MODEL)
    assert_request_id(first._request_id)
    assert_request_id(second._request_id)
    assert first._request_id != second._request_id


# Models -------------------------------------------------------------------------------------


def test_models(client: OpenAI) -> None:
    models = list(client.models.list())
    assert BASE_MODEL in [m.id for m in models]
    assert all(isinstance(m, Model) and m.object == "model" for m in models)

    base = client.models.retrieve(BASE_MODEL)
    assert (base.id, base.object) == (BASE_MODEL, "model")
    assert isinstance(base.created, int) and base.created > 0
    assert isinstance(base.owned_by, str) and base.owned_by
    assert_request_id(base._request_id)

    missing = "ft:SmolLM2-135M-Instruct:default:x:abcd1234"
    with pytest.raises(openai.NotFoundError) as caught:
        client.models.retrieve(missing)
    assert caught.value.code == "model_not_found"
    assert message(caught.value) == (
        f"The model `{missing}` does not exist or you do not have access to it.")

    with pytest.raises(openai.BadRequestError) as refused:
        client.models.delete(BASE_MODEL)
    assert refused.value.param == "model"
    assert "is a base model" in message(refused.value)
    assert BASE_MODEL in [m.id for m in client.models.list()]


# Gateway mode -------------------------------------------------------------------------------


def _fine_tuning_calls(client: OpenAI) -> dict[str, Callable[[], object]]:
    jobs = client.fine_tuning.jobs
    job_id = "ftjob-abc123"
    return {
        # The seed gateway's five ...
        "create": lambda: jobs.create(model=BASE_MODEL, training_file="file-abc123"),
        "list": lambda: jobs.list(),
        "retrieve": lambda: jobs.retrieve(job_id),
        "cancel": lambda: jobs.cancel(job_id),
        "list_events": lambda: jobs.list_events(job_id),
        # ... and the three it never had.
        "pause": lambda: jobs.pause(job_id),
        "resume": lambda: jobs.resume(job_id),
        "checkpoints": lambda: jobs.checkpoints.list(job_id),
    }


def test_gateway_mode_answers_501_on_every_fine_tuning_operation(
        gateway: Server, make_client: MakeClient) -> None:
    client = make_client(gateway, max_retries=0)
    for name, call in _fine_tuning_calls(client).items():
        with pytest.raises(openai.APIStatusError) as caught:
            call()
        error = caught.value
        assert error.status_code == 501, name
        assert error.response.json() == GATEWAY_BODY, name
        assert error.response.content == json.dumps(GATEWAY_BODY).encode(), name
        assert error.body == GATEWAY_BODY, name
        assert_request_id(error.request_id)


def test_gateway_mode_501_is_not_retried(gateway: Server, make_client: MakeClient) -> None:
    requests = Requests()
    client = make_client(gateway, requests)  # default retries
    with pytest.raises(openai.InternalServerError) as caught:
        client.fine_tuning.jobs.list()
    assert caught.value.status_code == 501
    assert caught.value.response.headers["x-should-retry"] == "false"
    assert requests.count("GET", "/fine_tuning/jobs") == 1


def test_gateway_mode_keeps_files_and_models(gateway: Server, make_client: MakeClient) -> None:
    client = make_client(gateway, max_retries=0)
    content = chat_lines(10)
    uploaded = sdk_upload(client, content)
    assert client.files.retrieve(uploaded.id).bytes == len(content)
    assert uploaded.id in [f.id for f in client.files.list()]
    assert client.files.content(uploaded.id).read() == content
    assert client.files.delete(uploaded.id).deleted is True
    assert BASE_MODEL in [m.id for m in client.models.list()]
    assert client.models.retrieve(BASE_MODEL).id == BASE_MODEL


# Bad input keeps the server serving ---------------------------------------------------------


def test_bad_uploads_are_answered_clearly_and_the_server_keeps_serving(
        client: OpenAI, srv: Server) -> None:
    with pytest.raises(openai.BadRequestError) as garbage:
        sdk_upload(client, b'{"messages": []}\n\x89PNG\r\n\x1a\n\x00\xff garbage',
                   name="g.jsonl")
    assert garbage.value.code == "invalid_file_format"
    assert garbage.value.param == "file"
    assert "Line 2" in message(garbage.value)

    with pytest.raises(openai.BadRequestError) as not_objects:
        sdk_upload(client, b'{"ok": 1}\n[1, 2]\n', name="array.jsonl")
    assert "Line 2" in message(not_objects.value)

    with pytest.raises(openai.BadRequestError) as empty:
        sdk_upload(client, b"", name="empty.jsonl")
    assert empty.value.code == "invalid_file_format"
    assert "empty" in message(empty.value)

    with pytest.raises(openai.BadRequestError) as bad_purpose:
        sdk_upload(client, chat_lines(10), purpose="fine-tune-results")
    assert bad_purpose.value.param == "purpose"

    # Raw HTTP: what the SDK cannot send.
    no_purpose = httpx.post(f"{srv.api}/files", files={"file": ("t.jsonl", chat_lines(10))})
    assert no_purpose.status_code == 400
    assert no_purpose.json()["error"]["param"] == "purpose"
    assert no_purpose.json()["error"]["message"] == "Missing required parameter: 'purpose'."
    assert no_purpose.json()["error"]["type"] == "invalid_request_error"
    assert no_purpose.headers["x-request-id"].startswith("req_")

    broken = httpx.post(f"{srv.api}/files", content=b"--xyz\r\nnot a part",
                        headers={"content-type": "multipart/form-data; boundary=xyz"})
    assert broken.status_code == 400, broken.text
    assert set(broken.json()["error"]) == {"message", "type", "param", "code"}

    no_model = httpx.post(f"{srv.api}/fine_tuning/jobs", json={"training_file": "file-x"})
    assert no_model.status_code == 400
    assert no_model.json()["error"]["param"] == "model"

    not_json = httpx.post(f"{srv.api}/fine_tuning/jobs", content=b"\xff\xfe{",
                          headers={"content-type": "application/json"})
    assert not_json.status_code == 400, not_json.text

    # None of it was stored, and the server still works.
    assert not [p for p in (srv.data_dir / "files").iterdir() if p.name.startswith(".partial")]
    assert srv.process.poll() is None
    fine = sdk_upload(client, chat_lines(10))
    assert client.files.content(fine.id).read() == chat_lines(10)
    assert BASE_MODEL in [m.id for m in client.models.list()]


def test_upload_over_the_limit_is_a_413_and_the_server_keeps_serving(
        small: Server, make_client: MakeClient) -> None:
    requests = Requests()
    client = make_client(small, requests)
    with pytest.raises(openai.APIStatusError) as caught:
        sdk_upload(client, chat_lines(40))
    error = caught.value
    assert error.status_code == 413
    assert error.code == "request_too_large"
    assert "the limit is 1000 bytes" in message(error)
    assert_request_id(error.request_id)
    assert requests.count("POST", "/files") == 1  # 413 is not retried

    assert small.process.poll() is None
    tiny = sdk_upload(client, chat_lines(2))
    assert client.files.content(tiny.id).read() == chat_lines(2)
    listed = [f.id for f in client.files.list()]
    assert tiny.id in listed
    # Nothing of the refused upload reached the disk: only the listed files are there.
    assert sorted(p.name for p in (small.data_dir / "files").iterdir()) == sorted(listed)


# API keys -----------------------------------------------------------------------------------

ALICE_KEY = "sk-tg-e2e-alice-000000000000000000000000"
BOB_KEY = "sk-tg-e2e-bob-0000000000000000000000000"
# One rate-limited key per client mode: each mode's test starts with a full bucket.
RATE_KEYS = {False: "sk-tg-e2e-rate-loose-0000000000000000000",
             True: "sk-tg-e2e-rate-strict-000000000000000000"}
RATE_LIMIT = 20


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server with keys for two projects (and two rate-test keys), listening on every address."""
    from tunegate.api.keys import hash_key

    tmp = tmp_path_factory.mktemp("sdk-keyed")
    keys = [(ALICE_KEY, "proj-alice", "org-alice"), (BOB_KEY, "proj-bob", "org-bob"),
            *((key, f"proj-rate-{strict}", "org-rate") for strict, key in RATE_KEYS.items())]
    keys_file = tmp / "keys.json"
    keys_file.write_text(json.dumps([{"hash": hash_key(key), "project": project,
                                      "organization": org} for key, project, org in keys]))
    running = _start(tmp, "--host", "0.0.0.0", "--keys-file", str(keys_file),
                     env={"TUNEGATE_RATE_LIMIT": str(RATE_LIMIT)})
    yield running
    stop_server(running)


def keyed_client(server: Server, key: str, strict: bool, **options: Any) -> OpenAI:
    return sdk_client(server, api_key=key, _strict_response_validation=strict, **options)


def test_sdk_with_a_key_sees_its_own_project_only(keyed: Server, strict: bool) -> None:
    with keyed_client(keyed, ALICE_KEY, strict) as alice, \
            keyed_client(keyed, BOB_KEY, strict) as bob:
        uploaded = sdk_upload(alice, chat_lines(12))
        job = sdk_create_job(alice, uploaded.id)
        assert job.organization_id == "org-alice"
        assert alice.files.retrieve(uploaded.id).id == uploaded.id
        with pytest.raises(openai.NotFoundError):
            bob.files.retrieve(uploaded.id)
        with pytest.raises(openai.NotFoundError):
            bob.fine_tuning.jobs.retrieve(job.id)
        with pytest.raises(openai.NotFoundError):
            bob.fine_tuning.jobs.cancel(job.id)
        assert job.id not in [j.id for j in bob.fine_tuning.jobs.list()]
        assert alice.fine_tuning.jobs.cancel(job.id).status == "cancelled"
    assert "no API keys" not in keyed.log()  # keys configured: no warning for 0.0.0.0


def test_sdk_with_a_wrong_key_gets_authentication_error(keyed: Server, strict: bool) -> None:
    # (The SDK itself refuses to send no key; tests/api/test_auth.py sends none.)
    for key in ("sk-tg-wrong", ALICE_KEY + "x"):
        with keyed_client(keyed, key, strict, max_retries=0) as client:
            with pytest.raises(openai.AuthenticationError) as refused:
                client.models.list()
            assert refused.value.status_code == 401
            assert refused.value.code == "invalid_api_key"
            assert refused.value.request_id is not None
    assert ALICE_KEY not in keyed.log() and "sk-tg-wrong" not in keyed.log()


def test_sdk_over_the_rate_limit_gets_rate_limit_error(keyed: Server, strict: bool) -> None:
    with keyed_client(keyed, RATE_KEYS[strict], strict, max_retries=0) as client:
        for _ in range(RATE_LIMIT):
            client.models.list()
        with pytest.raises(openai.RateLimitError) as limited:
            client.models.list()
        assert (limited.value.type, limited.value.code) == ("requests", "rate_limit_exceeded")
        assert int(limited.value.response.headers["retry-after"]) == 60 // RATE_LIMIT
