"""schemathesis against the in-process app: every check, the stateless and the stateful phase.

The app is ``create_app(settings, validate_responses=True)`` over a fresh temporary data folder
(conftest's ``app`` for each stateless operation; one per scenario in the stateful phase), so
connexion checks every answer against openapi.yaml while schemathesis runs all of its checks
(server errors, status codes, content types, headers, schema conformance, positive/negative data,
unsupported methods, ``Allow``, use-after-free, resource availability, ...) on top.

Run::

    .venv/bin/python -m pytest tests/api/test_schemathesis.py            # CI profile (~1 min)
    TUNEGATE_SCHEMATHESIS_PROFILE=long .venv/bin/python -m pytest tests/api/test_schemathesis.py

The CI profile is derandomized (the same cases on every run, no example database) and bounded;
``long`` draws many more examples and longer stateful scenarios, still derandomized so that a
failure it finds can be replayed by running it again.

Rules of ours that JSON Schema cannot state (a ``training_file`` must name an uploaded
``fine-tune`` file, ``model`` a known base model, metadata keys are at most 64 characters,
a ``reinforcement`` grader must check out, mixing the two hyperparameter places is refused, a
``fine-tune`` upload must be JSONL, an expiry policy has both of its fields, an upload's
``part_ids`` must name its own parts adding up to its ``bytes``) make schema-valid requests
answer 400, which the ``positive_data_acceptance`` check would count as a failure. ``acceptable()``
(``tunegate/contract/rules.py``, which the outside run of ``schemathesis.toml`` applies too) rewrites
exactly those values in the generated cases, and only where the generated value was itself
schema-valid, so negative cases stay negative. The 400s themselves are asserted in
``test_errors.py`` and ``test_unknown_parameters.py``.

Keys are configured (``tests/api/conftest.py``): every case carries project Alice's key through
a schemathesis auth provider, so ``ignored_auth`` resends each successful case without a key and
with a wrong one, and expects 401 both times.

Only the contract of fine-tuning, files, models, uploads, graders, evals and stored completions
is fuzzed here
(the tags below); the inference operations load llama.cpp and are tested with their own
code. Alice's key is not an
admin key, so the checkpoint-permission operations answer her 403 (after validation): what is
fuzzed there is the contract's refusals.

The schema is loaded at import time from a proxy app (``Target``) that each test points at its
own app: ``schemathesis.pytest.from_fixture`` would be the natural way, but schemathesis 4.32
renames pytest nodes through ``Node._nodeid``, which pytest 9 no longer has.
"""

from __future__ import annotations

import asyncio
import os
import re
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import hypothesis
import pytest
import schemathesis
from hypothesis import HealthCheck
from jsonschema import Draft4Validator
from schemathesis.checks import CHECKS, is_check_class, load_all_checks
from schemathesis.config import SchemathesisConfig
from schemathesis.core.parameters import ParameterLocation
from schemathesis.specs.openapi.checks import negative_data_rejection
from starlette.datastructures import QueryParams
from starlette.types import Receive, Scope, Send

from tests.api.conftest import ALICE
from tests.conftest import chat_lines, start_from_migrated
from tests.helpers import add_parts, create_upload, upload
from tunegate.api.app import build_service, create_app
from tunegate.api.event_stream import STOPPING_KEY
from tunegate.api.service import Service
from tunegate.contract import rules
from tunegate.domain.catalog import EMBEDDED_MODEL_ID
from tunegate.domain.job_requests import MAX_METADATA_KEY
from tunegate.settings import Settings

TAGS = ["Fine-tuning", "Files", "Models", "Uploads", "Graders", "Evals", "Stored completions"]
load_all_checks()
# Every check schemathesis has, named explicitly so that no configuration can switch one off.
ALL_CHECKS = [check for check in CHECKS.get_all() if not is_check_class(check)]

# Draws are derandomized in both profiles, yet stateful draws follow the app's answers (ids,
# timings), so they still differ between machines. The stateful phase walks every operation
# (``stateful_examples`` scenarios), then the operations of WORKFLOWS' links only (LINKED), then
# each link still unwalked over its own two operations: no machine can leave a link out.
# On this 2-core AMD EPYC: 28 s in all; the first walk alone covered every link in CI until
# one run left two out.
PROFILES = {
    "ci": {"stateless_examples": 100, "stateful_examples": 100, "linked_examples": 60,
           "stateful_steps": 15},
    "long": {"stateless_examples": 500, "stateful_examples": 300, "linked_examples": 100,
             "stateful_steps": 30},
}
PROFILE_NAME = os.environ.get("TUNEGATE_SCHEMATHESIS_PROFILE", "ci")
if PROFILE_NAME not in PROFILES:
    raise ValueError(f"TUNEGATE_SCHEMATHESIS_PROFILE={PROFILE_NAME!r}: use one of {list(PROFILES)}")
PROFILE = PROFILES[PROFILE_NAME]
BASE_SETTINGS = hypothesis.settings(
    derandomize=True,
    database=None,
    deadline=None,
    # The machine is shared with training jobs: slowness is not a finding. And one app per
    # operation is the point of the ``target`` fixture: its examples share that app's store.
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


# Cases sent per phase, and the auth checks' probes (requests without Alice's valid key).
CASES: Counter[str] = Counter()


class Target:
    """The app under test, as seen by the module-level schema (which needs an app at import time
    to read the spec): each test points it at that test's own fresh app and seeds it."""

    def __init__(self) -> None:
        self.app: Any = None
        self.client: Any = None
        self._training_file: str | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            authorization = dict(scope["headers"]).get(b"authorization")
            if authorization != f"Bearer {ALICE.key}".encode():
                # ignored_auth's probes: the same request with no key or a wrong one.
                CASES["probes without a valid key"] += 1
            # A live event stream of a job that never ends (no worker here) would never answer
            # in full: every request runs as if the server were stopping, so a stream sends
            # the stored events and ends (tunegate.api.event_stream), checked like any answer.
            stopping = asyncio.Event()
            stopping.set()
            scope = {**scope, STOPPING_KEY: stopping}
            if b"stream=true" in scope.get("query_string", b"") and scope["path"].endswith(
                    "/events"):
                CASES["live event streams"] += 1
        await self.app(scope, receive, send)

    def use(self, app: Any, client: Any) -> None:
        self.app, self.client, self._training_file = app, client, None
        self.training_file()

    def training_file(self) -> str:
        """A valid ``fine-tune`` file in the app's store, uploaded again if a run deleted it."""
        known = self._training_file
        if known is not None and self.client.get(f"/v1/files/{known}",
                                                 headers=ALICE.headers).status_code == 200:
            return known
        self._training_file = upload(self.client, name="seed.jsonl", headers=ALICE.headers)
        return self._training_file

    def completable_upload(self) -> tuple[str, list[str]]:
        """A fresh pending upload whose one part makes it whole: (its id, its part ids)."""
        upload_id = create_upload(self.client, len(rules.COMPLETABLE), purpose="batch",
                                  headers=ALICE.headers)
        return upload_id, add_parts(self.client, upload_id, rules.COMPLETABLE, len(rules.COMPLETABLE),
                                    headers=ALICE.headers)


TARGET = Target()
with tempfile.TemporaryDirectory() as _bootstrap:
    # Only the spec is read from this throwaway app; every test brings its own app.
    TARGET.app = create_app(Settings(data_dir=Path(_bootstrap)))
    # Not schemathesis.toml (the outside run's; its hooks rewrite cases for a real server):
    # everything this run needs is set here.
    schema = schemathesis.openapi.from_asgi("/v1/openapi.json", TARGET,
                                            config=SchemathesisConfig()).include(tag=TAGS)
    TARGET.app.state_service.store.close()
    TARGET.app = None


@schema.auth()
class AliceKey:
    """Every generated case is sent with project Alice's key (what ``ignored_auth`` removes)."""

    def get(self, case: Any, context: Any) -> str:
        return ALICE.key

    def set(self, case: Any, data: str, context: Any) -> None:
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data}"}


def _query_valid_as_sent(case: Any, query_string: str) -> bool:
    """Whether the query the server received is valid by the contract, read the way the server
    reads it: ``metadata[key]=text`` entries fold into one object of strings, and an unknown
    name or one given twice is refused."""
    declared = {param["name"]: param for param in case.operation.definition.raw.get("parameters", [])
                if param.get("in") == "query"}
    seen: set[str] = set()
    for key, text in QueryParams(query_string).multi_items():
        name = key if key in declared else key.split("[", 1)[0]
        if name not in declared or key in seen:
            return False
        seen.add(key)
        param, schema = declared[name], declared[name]["schema"]
        if param.get("style") == "deepObject":
            inner = key[len(name):]
            if key == name or not inner.startswith("[") or inner.index("]") != len(inner) - 1:
                return False
            continue  # any text is a valid metadata filter value
        value: Any = text
        if schema.get("type") == "integer":
            try:
                value = int(text)
            except ValueError:
                return False
        if not Draft4Validator(schema).is_valid(value):
            return False
    return True


def misfiled_negative(case: Any, response: Any) -> bool:
    """Whether schemathesis 4.32 filed ``case`` as negative although the request it sent is valid.

    Its deepObject serialization turns a "negative" ``metadata`` (``None``, ``3``, ``[x]``, a
    non-object) into ``metadata[key]=<text>`` entries, an object of strings: a valid filter. And an
    empty list in a multipart body is sent as no part at all. Only the ``negative_data_rejection``
    check is skipped for such a case; every other check still runs on it.
    """
    meta = case.meta
    if meta is None or meta.generation.mode.is_positive:
        return False
    body = case.body
    if (case.media_type == "multipart/form-data" and isinstance(body, dict)
            and any(value == [] for value in body.values())):
        return True
    if any(meta.is_negative_at(where) for where in (ParameterLocation.BODY, ParameterLocation.PATH,
                                                    ParameterLocation.HEADER)):
        return False
    return _query_valid_as_sent(case, response.request.url.split("?", 1)[1]
                                if "?" in response.request.url else "")


def validate(case: Any, response: Any, **kwargs: Any) -> None:
    """Every check, except ``negative_data_rejection`` on a misfiled negative case."""
    excluded = [negative_data_rejection] if misfiled_negative(case, response) else []
    case.validate_response(response, checks=ALL_CHECKS, excluded_checks=excluded, **kwargs)

def test_the_rules_know_the_code_s_limits() -> None:
    assert rules.MAX_METADATA_KEY == MAX_METADATA_KEY


def acceptable(case: Any) -> None:
    """Make a generated case meet the server-side rules JSON Schema cannot express
    (``tunegate/contract/rules.py``, shared with the outside run that schemathesis.toml sets up)."""
    rules.acceptable(case, training_file=TARGET.training_file, base_models=[EMBEDDED_MODEL_ID],
                     training_content=chat_lines(12),
                     completable_upload=TARGET.completable_upload)


@pytest.fixture(scope="module", autouse=True)
def _report(request: pytest.FixtureRequest) -> Iterator[None]:
    started = time.monotonic()
    yield
    plugins = request.config.pluginmanager
    reporter, capture = plugins.get_plugin("terminalreporter"), plugins.get_plugin("capturemanager")
    # The auth checks ran: successful cases were resent without a valid key.
    assert not CASES or CASES["probes without a valid key"] > 0
    if reporter is not None and capture is not None and CASES:
        summary = ", ".join(f"{phase}: {count} cases" for phase, count in sorted(CASES.items()))
        with capture.global_and_fixture_disabled():
            reporter.write_line(f"\nschemathesis ({PROFILE_NAME} profile): {summary} "
                                f"in {time.monotonic() - started:.0f} s")


@pytest.fixture
def fuzz_settings(keyed_settings: Settings) -> Settings:
    """Keys on; no active-job limit (with no worker, every created job stays active, and the
    creates after the eighth would all be 429s: correct, but they would test nothing else)."""
    return replace(keyed_settings, max_active_jobs=1_000_000)


@pytest.fixture
def target(fuzz_settings: Settings) -> Iterator[Target]:
    app = create_app(fuzz_settings, validate_responses=True)
    with app.test_client() as client:
        TARGET.use(app, client)
        yield TARGET
    TARGET.app = TARGET.client = None
    app.state_service.store.close()


@schema.parametrize()
@hypothesis.settings(BASE_SETTINGS, max_examples=PROFILE["stateless_examples"])
def test_stateless(case: Any, target: Target) -> None:
    acceptable(case)
    CASES["stateless"] += 1
    validate(case, case.call())


# (operation, link) -> a status the stateful phase must have seen at the end of that link. With
# no worker in the app, new jobs stay in `validating_files`: pause and resume are refused.
WORKFLOWS = {
    ("POST /files", "RetrieveFile"): 200,
    ("POST /files", "DownloadFile"): 200,
    ("POST /files", "DeleteFile"): 200,
    ("POST /fine_tuning/jobs", "RetrieveJob"): 200,
    ("POST /fine_tuning/jobs", "CancelJob"): 200,
    ("POST /fine_tuning/jobs", "PauseJob"): 409,
    ("POST /fine_tuning/jobs", "ResumeJob"): 409,
    ("POST /fine_tuning/jobs", "ListEvents"): 200,
    ("POST /fine_tuning/jobs", "ListCheckpoints"): 200,
    ("POST /uploads", "AddUploadPart"): 200,
    ("POST /uploads", "CancelUpload"): 200,
}
# The operations WORKFLOWS' links start from and lead to: the second walk's.
LINKED = re.compile(r"^[A-Z]+ /(files|fine_tuning/jobs|uploads)")


class ScenarioService:
    """The app's service; each stateful scenario swaps in a fresh one over a blank data folder.

    The scenarios run one after another against one app (each database a copy of the session's
    migrated one, tests/conftest.py). Were the store to carry over, the same
    drawn steps would meet different answers and Hypothesis would (rightly) call the data
    generation flaky; building a service is cheap where building the connexion app is not.
    """

    def __init__(self, settings: Settings, migrated: Path) -> None:
        self.settings = settings
        self.migrated = migrated
        self.current: Service | None = None
        self.count = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.current, name)

    def close(self) -> None:
        if self.current is not None:
            self.current.store.close()

    def fresh(self) -> None:
        self.close()
        self.count += 1
        data_dir = self.settings.data_dir / f"scenario-{self.count}"
        settings = start_from_migrated(self.migrated, replace(self.settings, data_dir=data_dir))
        self.current = build_service(settings)


def test_stateful(fuzz_settings: Settings, migrated_sqlite: Path) -> None:
    """Walk the OpenAPI links: upload → retrieve/content/delete, create job → its operations."""
    settings = fuzz_settings
    services = ScenarioService(settings, migrated_sqlite)
    services.fresh()
    app = create_app(settings, service=services, validate_responses=True)  # type: ignore[arg-type]
    walked: dict[tuple[str, str], set[int]] = defaultdict(set)

    def walk(part: Any, examples: int) -> None:
        class Workflows(part.as_state_machine()):  # type: ignore[misc]
            def setup(self) -> None:
                services.fresh()
                TARGET.use(app, client)

            def step(self, input: Any) -> Any:
                acceptable(input.case)
                CASES["stateful"] += 1
                output = super().step(input)
                if input.transition is not None and input.is_applied:
                    # e.g. "POST /files -> [200] RetrieveFile -> GET /files/{file_id}"
                    source, link, _ = input.transition.id.split(" -> ")
                    walked[(source, link.split("] ")[-1])].add(output.response.status_code)
                return output

            def validate_response(self, response: Any, case: Any,
                                  additional_checks: Any = None, **kwargs: Any) -> None:
                validate(case, response, additional_checks=additional_checks,
                         transport_kwargs=kwargs or None, recorder=self.recorder)

        Workflows.run(settings=hypothesis.settings(
            BASE_SETTINGS,
            max_examples=examples,
            stateful_step_count=PROFILE["stateful_steps"],
            phases=[hypothesis.Phase.generate],
        ))

    def missing() -> dict[tuple[str, str], int]:
        return {link: status for link, status in WORKFLOWS.items()
                if status not in walked.get(link, set())}

    with app.test_client() as client:
        try:
            walk(schema, PROFILE["stateful_examples"])
            walk(_only(lambda label: bool(LINKED.match(label))), PROFILE["linked_examples"])
            # Draws depend on the app's answers, so a link the two walks left out (CI once
            # missed POST /files -> DownloadFile) gets a walk over its two operations alone.
            for source, link in missing():
                walk(_only({source, _link_target(source, link)}.__contains__),
                     PROFILE["linked_examples"])
        finally:
            TARGET.app = TARGET.client = None
            services.close()
    assert not missing(), f"links never walked with the expected status: {missing()}"


def _only(keep: Callable[[str], bool]) -> Any:
    """The schema narrowed to the operations whose label ("GET /files") ``keep`` accepts.

    Not ``schema.include``: schemathesis ORs include filters, so next to the tag filter above
    it would narrow nothing."""
    return schema.exclude(lambda context: not keep(context.operation.label))


def _link_target(source: str, link: str) -> str:
    """The operation ("GET /files/{file_id}") that the spec's ``link`` from ``source`` leads to."""
    method, path = source.split(" ", 1)
    paths = schema.raw_schema["paths"]
    responses = paths[path][method.lower()]["responses"].values()
    operation_id = next(response["links"][link]["operationId"]
                        for response in responses if link in response.get("links", {}))
    return next(f"{verb.upper()} {where}" for where, item in paths.items()
                for verb, operation in item.items()
                if isinstance(operation, dict) and operation.get("operationId") == operation_id)
