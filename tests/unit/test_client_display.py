"""The followed job's display, fed by a fake event feed (no server): a terminal gets a redrawn
progress line (control codes, a bar), a pipe plain lines only; both print every message event
once, in order; the progress figures and the ETA come from the metrics events and the job; a
server that stops answering for a while is waited for."""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from openai.types.fine_tuning import FineTuningJob, FineTuningJobEvent
from rich.console import Console

from tunegate.client.display import LiveDisplay, PlainDisplay, display_for
from tunegate.client.feed import ServerUnreachable, Snapshot
from tunegate.client.follow import EXIT_FAILED, EXIT_OK, ending, follow
from tunegate.client.progress import Metrics, Progress, duration, figures

ESCAPE = "\x1b"
T0 = 1_800_000_000  # the fake job's clock: Unix seconds


def fake_job(status: str, **fields: Any) -> FineTuningJob:
    return FineTuningJob.model_validate({
        "id": "ftjob-fake", "object": "fine_tuning.job", "created_at": T0, "model": "base",
        "organization_id": "org-local", "result_files": [], "seed": 1, "status": status,
        "training_file": "file-fake", "error": None, "fine_tuned_model": None,
        "finished_at": None, "hyperparameters": {}, "trained_tokens": None,
        "validation_file": None, **fields})


def message(n: int, text: str, level: str = "info") -> FineTuningJobEvent:
    return FineTuningJobEvent.model_validate({
        "id": f"ftevent-{n:03d}", "object": "fine_tuning.job.event", "created_at": T0 + n,
        "level": level, "message": text, "type": "message", "data": None})


def metrics(n: int, step: int, total: int, loss: float, **extra: Any) -> FineTuningJobEvent:
    return FineTuningJobEvent.model_validate({
        "id": f"ftevent-{n:03d}", "object": "fine_tuning.job.event", "created_at": T0 + n,
        "level": "info", "message": f"Step {step}/{total}", "type": "metrics",
        "data": {"step": step, "train_loss": loss, "valid_loss": None, "total_steps": total,
                 **extra}})


class FakeEventFeed:
    """A job's polls, scripted: each ``poll`` answers the next snapshot."""

    def __init__(self, snapshots: list[Snapshot]):
        self._snapshots: Iterator[Snapshot] = iter(snapshots)
        self.polls = 0

    def poll(self) -> Snapshot:
        self.polls += 1
        return next(self._snapshots)


def a_ten_step_job() -> list[Snapshot]:
    return [
        Snapshot(fake_job("validating_files"), [message(1, "Validating training file")]),
        Snapshot(fake_job("running", estimated_finish=T0 + 40),
                 [message(2, "Fine-tuning job started"),
                  *(metrics(2 + step, step, 10, 2.0 / step, tokens_per_second=812.4)
                    for step in range(1, 4))]),
        Snapshot(fake_job("running", estimated_finish=T0 + 40),
                 [metrics(2 + step, step, 10, 2.0 / step, tokens_per_second=790.0,
                          learning_rate=1e-3) for step in range(4, 11)]),
        Snapshot(fake_job("succeeded", fine_tuned_model="ft:base:org-local::fake"),
                 [message(20, "Checkpoint created at step 10", "warn"),
                  message(21, "The job has successfully completed")]),
    ]


def run_display(display: Any) -> FineTuningJob:
    sleeps: list[float] = []
    feed = FakeEventFeed(a_ten_step_job())
    job = follow(feed, display, sleep=sleeps.append, clock=lambda: T0 + 30)
    assert feed.polls == 4 and sleeps == [1.0, 1.0, 1.0]  # about once a second, then done
    return job


def test_piped_output_is_plain_lines_without_control_codes() -> None:
    out = io.StringIO()
    job = run_display(PlainDisplay(out))
    assert job.status == "succeeded"
    text = out.getvalue()
    assert ESCAPE not in text and "\r" not in text
    lines = text.splitlines()
    assert [line.split(" ", 1)[1] for line in lines if not line.startswith("  ")] == [
        "Validating training file", "Fine-tuning job started",
        "warn  Checkpoint created at step 10", "The job has successfully completed"]
    progress = [line.strip() for line in lines if line.startswith("  ")]
    # The first step, each tenth of the steps, the last: not one line per step of a long job.
    assert [line.split("  ")[0] for line in progress] == [
        "step 1/10", "step 2/10", "step 3/10", "step 4/10", "step 5/10", "step 6/10",
        "step 7/10", "step 8/10", "step 9/10", "step 10/10"]
    assert progress[0] == "step 1/10  train loss 2.0000  812 tokens/s  ETA 0:10"
    assert progress[3] == "step 4/10  train loss 0.5000  lr 1.00e-03  790 tokens/s  ETA 0:10"
    assert "ETA" not in progress[-1]  # the steps are done: the export left has no ETA


def test_a_long_job_prints_a_line_each_tenth_of_its_steps_and_every_30_seconds() -> None:
    out = io.StringIO()
    display = PlainDisplay(out)
    progress = Progress(status="running")
    for step in range(1, 1001):
        event = metrics(step, step, 1000, 1.0)  # a step a second: under the 30 s rule
        progress.observe_metrics(Metrics.from_event(event.data, event.created_at))  # type: ignore[arg-type]
        display.event(event, progress, T0)
    steps = [int(line.split()[1].split("/")[0]) for line in out.getvalue().splitlines()]
    assert steps[0] == 1 and steps[-1] == 1000
    assert all(step in steps for step in range(100, 1001, 100))  # each tenth
    assert max(b - a for a, b in zip(steps, steps[1:], strict=False)) == 30  # 30 s at most
    assert len(steps) < 50  # not a line a step


def test_a_terminal_gets_a_redrawn_progress_bar() -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=100, color_system="standard")
    job = run_display(LiveDisplay(console))
    assert job.status == "succeeded"
    text = out.getvalue()
    assert ESCAPE in text and "━" in text  # colours, cursor moves and a bar
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)
    assert "step 3/10 · train loss 0.6667 · 812 tokens/s · ETA 0:10" in plain
    assert "step 10/10 · train loss 0.2000 · lr 1.00e-03 · 790 tokens/s" in plain
    for line in ("Validating training file", "Fine-tuning job started",
                 "warn  Checkpoint created at step 10", "The job has successfully completed"):
        assert plain.count(line) == 1, line  # printed once, above the redrawn line
    assert "succeeded" in plain.rsplit("The job has successfully completed", 1)[1]


def test_the_display_is_chosen_by_whether_stdout_is_a_terminal() -> None:
    class FakeTerminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert isinstance(display_for(io.StringIO()), PlainDisplay)
    assert isinstance(display_for(FakeTerminal()), LiveDisplay)


def test_eta_comes_from_the_server_else_from_the_step_rate() -> None:
    progress = Progress()
    progress.observe_job("running", None)
    assert progress.eta_seconds(T0) is None  # no metrics yet
    progress.observe_metrics(Metrics(step=2, total_steps=12, created_at=T0))
    assert progress.eta_seconds(T0) is None  # one sample: no rate
    progress.observe_metrics(Metrics(step=6, total_steps=12, created_at=T0 + 8))
    assert progress.eta_seconds(T0 + 8) == 12.0  # 2 s a step, 6 steps left
    progress.observe_job("running", T0 + 100)
    assert progress.eta_seconds(T0 + 40) == 60.0  # the server's estimated_finish wins
    progress.observe_job("paused", T0 + 100)
    assert progress.eta_seconds(T0 + 40) is None
    assert figures(progress, T0) == ["step 6/12"]  # no loss sent: none shown
    assert (duration(59.6), duration(3725)) == ("1:00", "1:02:05")


def test_metrics_without_a_step_or_with_odd_values_are_skipped_not_fatal() -> None:
    assert Metrics.from_event(None, T0) is None
    assert Metrics.from_event({"train_loss": 1.0}, T0) is None
    odd = Metrics.from_event({"step": 3, "train_loss": "nan?", "total_steps": None,
                              "tokens_per_second": True}, T0)
    assert odd == Metrics(step=3, total_steps=None, created_at=T0)


def test_the_ending_names_the_model_or_the_error() -> None:
    done = ending(fake_job("succeeded", fine_tuned_model="ft:base:org-local::abc"),
                  chat_command="tunegate chat")
    assert done.code == EXIT_OK and done.err == []
    assert done.out == ["Fine-tuned model: ft:base:org-local::abc",
                        'Try it: tunegate chat ft:base:org-local::abc "Hello!"']
    failed = ending(fake_job("failed", error={"code": "invalid_n_examples", "param": "training_file",
                                              "message": "Training file has 5 example(s)"}),
                    chat_command="tunegate chat")
    assert failed.code == EXIT_FAILED and failed.out == []
    assert failed.err == ["Job ftjob-fake failed: invalid_n_examples: Training file has 5 example(s)"]
    cancelled = ending(fake_job("cancelled"), chat_command="tunegate chat")
    assert (cancelled.code, cancelled.err) == (EXIT_FAILED, ["Job ftjob-fake cancelled."])


class FakeRestartingFeed(FakeEventFeed):
    """A fake event feed whose server stops answering for ``down`` polls after the first."""

    def __init__(self, snapshots: list[Snapshot], down: int):
        super().__init__(snapshots)
        self.down = down

    def poll(self) -> Snapshot:
        if self.polls >= 1 and self.down > 0:
            self.down -= 1
            self.polls += 1
            try:
                try:
                    raise ConnectionRefusedError(111, "Connection refused")
                except ConnectionRefusedError as refused:
                    raise openai.APIConnectionError(
                        request=httpx.Request("GET", "http://gone/v1")) from refused
            except openai.APIConnectionError as error:
                raise ServerUnreachable("gone") from error
        return super().poll()


def test_a_server_that_restarts_is_waited_for() -> None:
    out = io.StringIO()
    seconds = iter(range(T0, T0 + 1000, 10))  # each poll 10 s later
    job = follow(FakeRestartingFeed(a_ten_step_job(), down=5), PlainDisplay(out),
                 sleep=lambda _: None, clock=lambda: next(seconds))
    assert job.status == "succeeded"
    lines = out.getvalue().splitlines()
    assert lines.count("The server does not answer; trying again for 120 s") == 1
    assert lines.count("The server answers again") == 1
    assert lines.index("The server answers again") < lines.index(
        next(line for line in lines if line.endswith("Fine-tuning job started")))


def test_a_server_gone_for_good_ends_the_follow_with_the_sdks_error() -> None:
    seconds = iter(range(T0, T0 + 10000, 10))
    with pytest.raises(openai.APIConnectionError) as raised:
        follow(FakeRestartingFeed(a_ten_step_job(), down=100), PlainDisplay(io.StringIO()),
               sleep=lambda _: None, clock=lambda: next(seconds))
    assert isinstance(raised.value.__cause__, ConnectionRefusedError)  # the reason, for its line


def test_a_reinforcement_run_shows_its_rewards() -> None:
    progress = Progress()
    progress.observe_metrics(Metrics.from_event(  # type: ignore[arg-type]
        {"step": 4, "total_steps": 10, "train_reward_mean": 0.25, "valid_reward_mean": 0.5}, T0))
    progress.observe_metrics(Metrics.from_event(  # type: ignore[arg-type]
        {"step": 5, "total_steps": 10, "train_reward_mean": 0.375}, T0 + 1))
    assert figures(progress, T0) == ["step 5/10", "reward 0.375", "valid reward 0.500"]
