"""One real fine-tune for the whole pytest session: the tests that need "a model trained by
tunegate" share it instead of each training their own.

``fine_tune`` starts one ``tunegate serve`` (embedded worker, the session's converted-model
cache), uploads ``tests/data/tunegate__made_up_countries.jsonl`` (24 invented countries, each
answered as one JSON object ``{"name", "capital", "population"}``, asked two ways) through the
official SDK and trains it on ``gpt-4o-mini-2024-07-18``, the OpenAI name that stands for the
embedded SmolLM2 (as unchanged OpenAI code would), 4 epochs at batch 4. The fixture hands back
the server, a loose SDK client, the finished job and its model. Measured on 2 cores (an AMD
EPYC, quiet, 2026-12-07): the job alone 48 s; the whole fixture (server start, the base
model's conversion into the session's cache, upload, training, export) 60 s. On questions
worded as in no training line ("Which city is the capital of X?", "Tell me about X."), the
fine-tune named the right capital 22 times of 24, the base model never; the populations it
makes up (it did not learn the numbers).

Before the job is created, three webhook endpoints are registered on the server, each with a
receiver of its own on 127.0.0.1 (``FineTune.webhooks``): one for the job's success only, one
for every end of a job, one for a job's failure or cancellation only; so the success of this
real job must reach the first two once each and the third never
(tests/e2e/test_webhooks_fine_tune_sdk.py).

Tests share the server: they may add evals, files and runs, never delete the model or stop
the worker, cancel a job or let one fail (the third receiver must stay empty). The server
(with its llama.cpp processes, ~1 GB) is stopped as soon as the last test that asked for it
is done (``stop_after_last_user``), not at the end of the session. The
capitals, questions and rewordings for the tests are here too.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from openai import OpenAI
from openai.types.fine_tuning import FineTuningJob

from tests.servers import Server, sdk_client, start_server_afresh, stop_server
from tests.webhook_receiver import FakeReceiver

FACTS_FILE = Path(__file__).resolve().parent / "data" / "tunegate__made_up_countries.jsonl"
ALIAS = "gpt-4o-mini-2024-07-18"  # TUNEGATE_MODEL_ALIASES' default: the embedded SmolLM2
SUFFIX = "facts"
# The fewest epochs after which the rewordings below got their capital right (22 of 24); 2
# epochs left the model answering in JSON with the wrong capitals.
HYPERPARAMETERS = {"n_epochs": 4, "batch_size": 4, "learning_rate_multiplier": 2.0}
# Wordings that no training line uses: a right answer comes from the facts, not the strings.
REWORDINGS = ("Which city is the capital of {name}?", "Tell me about {name}.")
# The endpoints registered before the job: name -> the event types it is subscribed to.
SUBSCRIPTIONS = {
    "success": ["fine_tuning.job.succeeded"],
    "job_ends": ["fine_tuning.job.succeeded", "fine_tuning.job.failed",
                 "fine_tuning.job.cancelled"],
    "other": ["fine_tuning.job.failed", "fine_tuning.job.cancelled"],
}


@dataclass(frozen=True)
class Country:
    name: str
    capital: str
    population: int

    def answer(self) -> str:
        """The training file's answer, byte for byte."""
        return json.dumps({"name": self.name, "capital": self.capital,
                           "population": self.population})


def countries() -> list[Country]:
    """The made-up countries of the training file, in its order, each once."""
    seen: dict[str, Country] = {}
    for line in FACTS_FILE.read_text().splitlines():
        answer = json.loads(json.loads(line)["messages"][-1]["content"])
        seen.setdefault(answer["name"], Country(**answer))
    return list(seen.values())


def reworded(index: int, country: Country) -> str:
    """A question about ``country`` in a wording the training never saw (alternating two)."""
    return REWORDINGS[index % len(REWORDINGS)].format(name=country.name)


@dataclass(frozen=True)
class Subscriber:
    """A webhook endpoint registered before the job, and the receiver its URL names (which
    holds the endpoint's secret: it verifies each message on arrival)."""

    receiver: FakeReceiver
    endpoint_id: str


@dataclass(frozen=True)
class FineTune:
    server: Server
    client: OpenAI  # loose; ``strict_client`` for the SDK's own response types
    job: FineTuningJob
    model: str  # the job's fine_tuned_model
    webhooks: dict[str, Subscriber]  # by SUBSCRIPTIONS' names

    def strict_client(self) -> OpenAI:
        return sdk_client(self.server, max_retries=0, timeout=300,
                          _strict_response_validation=True)


RUNNING = pytest.StashKey[FineTune]()
LAST_USER = pytest.StashKey[str]()


@pytest.fixture(scope="session")
def fine_tune(tmp_path_factory: pytest.TempPathFactory,
              request: pytest.FixtureRequest) -> Iterator[FineTune]:
    # Here, not at the top: tests/conftest.py imports this module, and these import it.
    from tests.conftest import session_model_cache
    from tests.helpers import sdk_upload, wait_until_finished

    server = start_server_afresh(
        tmp_path_factory.mktemp("fine-tune"),
        # One job ever trains here: no trainer kept waiting (~300 MB) for the rest of the session.
        env={"TUNEGATE_MODEL_CACHE": str(session_model_cache(tmp_path_factory)),
             "TUNEGATE_TRAINER_STANDBY": "disabled",
             "TUNEGATE_WEBHOOK_ALLOW_NETWORKS": "127.0.0.1/32"})
    client = sdk_client(server, max_retries=0, timeout=300)
    subscribers: dict[str, Subscriber] = {}
    try:
        for name, event_types in SUBSCRIPTIONS.items():
            subscribers[name] = subscribe(server, FakeReceiver().start(), name, event_types)
        job = client.fine_tuning.jobs.create(
            model=ALIAS, training_file=sdk_upload(client, FACTS_FILE.read_bytes()).id,
            suffix=SUFFIX, seed=7,
            method={"type": "supervised", "supervised": {"hyperparameters": HYPERPARAMETERS}})
        done = wait_until_finished(client, job.id)
        assert done.status == "succeeded" and done.fine_tuned_model, (
            done.error, server.log()[-3000:])
        request.session.stash[RUNNING] = FineTune(server, client, done, done.fine_tuned_model,
                                                  subscribers)
        yield request.session.stash[RUNNING]
    finally:
        client.close()
        stop_server(server)
        for subscriber in subscribers.values():
            subscriber.receiver.stop()


def subscribe(server: Server, receiver: FakeReceiver, name: str,
              event_types: list[str]) -> Subscriber:
    """Register ``receiver`` for ``event_types`` through the strict SDK client; the receiver
    verifies each message with the endpoint's secret as it arrives."""
    strict = sdk_client(server, max_retries=0, _strict_response_validation=True)
    try:
        made = strict.webhooks.create(url=receiver.url, name=name,
                                      event_types=event_types)  # type: ignore[arg-type]
    except BaseException:
        receiver.stop()
        raise
    finally:
        strict.close()
    receiver.verify_on_arrival(made.signing_secret)
    return Subscriber(receiver, made.id)


def stop_after_last_user(item: pytest.Item) -> None:
    """After ``item`` (tests/conftest.py's ``pytest_runtest_teardown``): stop the fine-tune's
    server if ``item`` is the last test of the session's order that uses it (stopping twice,
    again at the session's end, does nothing)."""
    session = item.session
    if LAST_USER not in session.stash:
        users = [each.nodeid for each in session.items
                 if "fine_tune" in getattr(each, "fixturenames", ())]
        session.stash[LAST_USER] = users[-1] if users else ""
    running = session.stash.get(RUNNING, None)
    if running is not None and item.nodeid == session.stash[LAST_USER]:
        stop_server(running.server)
