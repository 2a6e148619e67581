"""The client commands: ``train``, ``jobs list|show|follow|cancel|pause|resume``, ``chat``,
``eval``, ``webhooks`` (tunegate.client.webhooks) and ``completions export``
(tunegate.client.completions), each a function of its parsed arguments
that returns the exit code."""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from tunegate.client.completions import run_completions
from tunegate.client.connection import Connection, run_reporting_errors
from tunegate.client.display import display_for
from tunegate.client.feed import JobFeed
from tunegate.client.follow import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, ending, follow
from tunegate.client.listing import job_details, jobs_table
from tunegate.client.webhooks import run_webhooks

if TYPE_CHECKING:
    from openai import OpenAI

EXIT_USAGE = 2  # argparse's code for a bad command line: a missing file is one too


@dataclass
class Terminal:
    """Where a command reads and writes (the process's streams; a test's own)."""

    out: IO[str] = field(default_factory=lambda: sys.stdout)
    err: IO[str] = field(default_factory=lambda: sys.stderr)
    stdin: IO[str] = field(default_factory=lambda: sys.stdin)

    def say(self, line: str) -> None:
        self.out.write(line + "\n")
        self.out.flush()

    def complain(self, line: str) -> None:
        self.err.write(line + "\n")
        self.err.flush()


def run(args: argparse.Namespace, terminal: Terminal | None = None) -> int:
    """Run the client command ``args`` names; its exit code."""
    terminal = terminal or Terminal()
    connection = Connection.resolve(args.url)
    commands: dict[str, Callable[[argparse.Namespace, Connection, Terminal], int]] = {
        "train": train, "jobs": jobs, "chat": chat, "eval": evaluate,
        "migrate": migrate,
        "webhooks": lambda args, connection, terminal: run_webhooks(args, connection.client(),
                                                                    terminal),
        "completions": lambda args, connection, terminal: run_completions(
            args, connection.client(), terminal)}
    command = functools.partial(commands[args.command], args, connection, terminal)
    try:
        return run_reporting_errors(command, connection.url, terminal.err)
    except KeyboardInterrupt:  # before a job exists (during an upload, say): nothing to ask
        terminal.complain("interrupted")
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `tunegate jobs list | head -1`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no error at exit
        return EXIT_FAILED


# train ------------------------------------------------------------------------------------


# Reinforcement's own flags, by hyperparameter name.
REINFORCEMENT_FLAGS = ("compute_multiplier", "eval_interval", "eval_samples", "reasoning_effort")


def method_of(args: argparse.Namespace, grader: dict[str, Any] | None = None) -> dict[str, Any]:
    """The job's ``method`` from the flags (and a reinforcement job's ``grader``, read from
    ``--grader``); hyperparameters not given stay the server's auto."""
    given = [("n_epochs", args.epochs), ("batch_size", args.batch_size),
             ("learning_rate_multiplier", args.learning_rate_multiplier)]
    if args.method == "reinforcement":
        given += [(name, getattr(args, name, None)) for name in REINFORCEMENT_FLAGS]
    hyperparameters = {name: value for name, value in given if value is not None}
    body: dict[str, Any] = {"hyperparameters": hyperparameters}
    if grader is not None:
        body = {"grader": grader, **body}
    return {"type": args.method, args.method: body}


def read_grader(args: argparse.Namespace, terminal: Terminal,
                ) -> tuple[bool, dict[str, Any] | None]:
    """``(ok, grader)``: the ``--grader`` file's object (``None`` for a method that takes
    none); ``ok`` False, said why, when it is missing, given to another method, unreadable or
    not a JSON object. The server checks the grader's fields."""
    path = getattr(args, "grader", None)
    if args.method != "reinforcement":
        if path is not None:
            terminal.complain("tunegate train: --grader is for --method reinforcement")
        return path is None, None
    if path is None:
        terminal.complain("tunegate train: --method reinforcement needs --grader FILE (a JSON "
                          "grader object)")
        return False, None
    try:
        grader = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        terminal.complain(f"tunegate train: cannot read the grader {path}: {exc}")
        return False, None
    if not isinstance(grader, dict):
        terminal.complain(f"tunegate train: {path} must hold a JSON object (a grader)")
        return False, None
    return True, grader


def train(args: argparse.Namespace, connection: Connection, terminal: Terminal) -> int:
    """Check the model, upload, create the job, follow it to its end.

    The model is checked before anything is uploaded, and the files of an attempt whose job
    was not created are deleted again: a failed ``train`` leaves nothing behind.
    """
    for path in (args.file, args.validation_file):
        if path is not None and not path.is_file():
            terminal.complain(f"tunegate train: no such file: {path}")
            return EXIT_USAGE
    grader_ok, grader = read_grader(args, terminal)
    if not grader_ok:
        return EXIT_USAGE
    client = connection.client()
    client.models.retrieve(args.model)  # a 404 names the model: nothing uploaded yet
    uploaded: list[str] = []
    try:
        training_file = _upload(client, args.file, terminal, uploaded)
        validation_file = (_upload(client, args.validation_file, terminal, uploaded)
                           if args.validation_file is not None else None)
        options: dict[str, Any] = {"validation_file": validation_file, "suffix": args.suffix,
                                   "seed": args.seed}
        job = client.fine_tuning.jobs.create(
            model=args.model, training_file=training_file,
            method=method_of(args, grader),  # type: ignore[arg-type]
            **{name: value for name, value in options.items() if value is not None})
    except BaseException:
        _delete(client, uploaded, terminal)
        raise
    terminal.say(f"Created job {job.id} on {job.model}")
    return follow_job(client, job.id, connection, terminal)


def _upload(client: OpenAI, path: Path, terminal: Terminal, uploaded: list[str]) -> str:
    with path.open("rb") as data:
        stored = client.files.create(file=(path.name, data, "application/jsonl"),
                                     purpose="fine-tune")
    uploaded.append(stored.id)
    terminal.say(f"Uploaded {path} as {stored.id} ({stored.bytes:,} bytes)")
    return stored.id


def _delete(client: OpenAI, file_ids: list[str], terminal: Terminal) -> None:
    """Take back the files of an attempt that made no job (best effort: the error that ended
    the attempt is the one to report)."""
    import openai

    for file_id in file_ids:
        try:
            client.files.delete(file_id)
        except openai.OpenAIError:
            terminal.complain(f"could not delete {file_id}; delete it with the files API")
        else:
            terminal.complain(f"Deleted {file_id}: no job was created")


# following ---------------------------------------------------------------------------------


def follow_job(client: OpenAI, job_id: str, connection: Connection, terminal: Terminal) -> int:
    """Follow until the job ends and say how; Ctrl-C asks what to do with the job."""
    try:
        job = follow(JobFeed(client, job_id), display_for(terminal.out))
    except KeyboardInterrupt:
        return interrupted(client, job_id, connection, terminal)
    result = ending(job, chat_command=f"tunegate chat{connection.url_flag()}")
    for line in result.out:
        terminal.say(line)
    for line in result.err:
        terminal.complain(line)
    return result.code


CANCEL_ANSWERS = ("y", "yes", "c", "cancel")


def interrupted(client: OpenAI, job_id: str, connection: Connection, terminal: Terminal) -> int:
    """After Ctrl-C: in a terminal, ask whether to cancel the job; otherwise (or when the
    answer is no) leave it running and say how to follow it again."""
    again = f"tunegate jobs follow{connection.url_flag()} {job_id}"
    if terminal.stdin.isatty():
        terminal.out.write(f"\nCancel job {job_id}? [y/N] (no: it keeps running) ")
        terminal.out.flush()
        try:
            answer = terminal.stdin.readline()
        except KeyboardInterrupt:  # a second Ctrl-C: leave it
            answer = ""
        if answer.strip().lower() in CANCEL_ANSWERS:
            job = client.fine_tuning.jobs.cancel(job_id)
            terminal.complain(f"Job {job.id} {job.status}.")
            return EXIT_FAILED
    terminal.complain(f"\nJob {job_id} left running; follow it again with: {again}")
    return EXIT_INTERRUPTED


# jobs ------------------------------------------------------------------------------------


def jobs(args: argparse.Namespace, connection: Connection, terminal: Terminal) -> int:
    client = connection.client()
    action = args.jobs_command
    if action == "list":
        page = client.fine_tuning.jobs.list(limit=args.limit)
        if args.json:
            for job in page.data:
                terminal.say(job.to_json(indent=None))
        else:
            jobs_table(page.data, terminal.out)
        return EXIT_OK
    if action == "show":
        job = client.fine_tuning.jobs.retrieve(args.job_id)
        if args.json:
            terminal.say(job.to_json())
        else:
            events = list(client.fine_tuning.jobs.list_events(args.job_id, limit=20).data)
            job_details(job, events, terminal.out)
        return EXIT_OK
    if action == "follow":
        return follow_job(client, args.job_id, connection, terminal)
    change = {"cancel": client.fine_tuning.jobs.cancel, "pause": client.fine_tuning.jobs.pause,
              "resume": client.fine_tuning.jobs.resume}[action]
    job = change(args.job_id)
    terminal.say(f"{job.id} {job.status}")
    return EXIT_OK


# chat ------------------------------------------------------------------------------------


def chat(args: argparse.Namespace, connection: Connection, terminal: Terminal) -> int:
    """One question; the answer written as its tokens arrive."""
    from openai import omit
    from openai.types.chat import ChatCompletionMessageParam

    messages: list[ChatCompletionMessageParam] = [{"role": "user", "content": args.prompt}]
    if args.system:
        messages.insert(0, {"role": "system", "content": args.system})
    stream = connection.client().chat.completions.create(
        model=args.model, messages=messages, stream=True, max_tokens=args.max_tokens,
        temperature=omit if args.temperature is None else args.temperature)
    try:
        for chunk in stream:
            for choice in chunk.choices:
                if choice.delta.content:
                    terminal.out.write(choice.delta.content)
                    terminal.out.flush()  # token by token, not when a buffer fills
    except KeyboardInterrupt:
        stream.close()  # the server stops generating when the stream goes
        terminal.say("")
        return EXIT_INTERRUPTED
    terminal.say("")
    return EXIT_OK


# eval -------------------------------------------------------------------------------------


def evaluate(args: argparse.Namespace, connection: Connection, terminal: Terminal) -> int:
    """Run an eval on a model (tunegate.client.evaluate), or grade a job's model and its base
    on its validation file (``--job``, tunegate.client.job_eval); the per-criterion table."""
    import warnings

    if getattr(args, "job", None):
        return evaluate_job_command(args, connection, terminal)
    from tunegate.client.evaluate import run_eval

    if not args.eval_id or not args.model or args.file is None:
        terminal.complain("tunegate eval: give EVAL_ID, --model and --file, or --job JOB_ID")
        return EXIT_USAGE
    if not args.file.is_file():
        terminal.complain(f"tunegate eval: no such file: {args.file}")
        return EXIT_USAGE
    with warnings.catch_warnings():  # the SDK warns that OpenAI's own Evals API is shut
        warnings.filterwarnings("ignore", "The Evals API is deprecated")
        run = run_eval(connection.client(), args.eval_id, args.model, args.file,
                       prompt=args.prompt, item_reference=args.item_reference,
                       max_tokens=args.max_tokens, say=terminal.say)
    return EXIT_OK if run["status"] == "completed" else EXIT_FAILED


def evaluate_job_command(args: argparse.Namespace, connection: Connection,
                         terminal: Terminal) -> int:
    import json
    import warnings

    from tunegate.client.job_eval import (
        DEFAULT_METRIC,
        DEFAULT_THRESHOLD,
        NotEvaluable,
        default_criterion,
        evaluate_job,
    )

    if args.eval_id or args.model or args.file is not None:
        terminal.complain("tunegate eval: --job makes its own eval, model list and items: "
                          "give no EVAL_ID, --model or --file with it")
        return EXIT_USAGE
    if args.grader:
        try:
            criterion = json.loads(args.grader)
        except ValueError as exc:
            terminal.complain(f"tunegate eval: --grader is not JSON: {exc}")
            return EXIT_USAGE
    else:
        criterion = default_criterion(args.metric or DEFAULT_METRIC,
                                      DEFAULT_THRESHOLD if args.pass_threshold is None
                                      else args.pass_threshold)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "The Evals API is deprecated")
        try:
            runs = evaluate_job(connection.client(), args.job, criterion=criterion,
                                max_tokens=args.max_tokens, say=terminal.say)
        except NotEvaluable as exc:
            terminal.complain(f"tunegate eval: {exc}")
            return EXIT_FAILED
    return EXIT_OK if all(run["status"] == "completed" for run in runs) else EXIT_FAILED


# migrate ----------------------------------------------------------------------------------


def migrate(args: argparse.Namespace, connection: Connection, terminal: Terminal) -> int:
    """Move jobs from another OpenAI-compatible API (tunegate.client.migrate)."""
    from openai import OpenAI

    from tunegate.client.connection import NO_KEY, api_url
    from tunegate.client.migrate import OPENAI_URL, SOURCE_RETRIES, Choices, run_migration
    from tunegate.client.migration_state import MigrationState, default_path
    from tunegate.client.recording import Messages, prompts_in

    mapping = {}
    for entry in args.map:
        base, equals, local = entry.partition("=")
        if not equals or not base or not local:
            terminal.complain(f"tunegate migrate: --map takes BASE=LOCAL, got {entry!r}")
            return EXIT_USAGE
        mapping[base] = local
    prompts: tuple[Messages, ...] = ()
    if args.prompts is not None:
        if not args.prompts.is_file():
            terminal.complain(f"tunegate migrate: no such file: {args.prompts}")
            return EXIT_USAGE
        prompts = tuple(prompts_in(args.prompts.read_bytes()))
    source_url = api_url(args.source) if args.source else OPENAI_URL
    key = args.key or os.environ.get("OPENAI_API_KEY")
    if not key:
        terminal.complain("tunegate migrate: give the source's key (--key or OPENAI_API_KEY)")
        return EXIT_USAGE
    try:
        state = MigrationState.load(args.state or default_path(source_url, connection.url),
                                    source_url, connection.url)
    except ValueError as exc:
        terminal.complain(f"tunegate migrate: {exc}")
        return EXIT_USAGE
    source = OpenAI(base_url=source_url, api_key=key, max_retries=SOURCE_RETRIES)
    # Never OPENAI_API_KEY here (Connection.resolve falls back to it): that is the source's.
    target = OpenAI(base_url=connection.url,
                    api_key=os.environ.get("TUNEGATE_API_KEY") or NO_KEY)

    def ask(question: str) -> bool:
        if not terminal.stdin.isatty():
            return False
        terminal.out.write(f"{question} [y/N] ")
        terminal.out.flush()
        return terminal.stdin.readline().strip().lower() in ("y", "yes")

    return run_migration(source, target, state,
                         Choices(mapping, dry_run=args.dry_run, yes=args.yes,
                                 record=args.record or bool(prompts), prompts=prompts,
                                 max_tokens=args.max_tokens),
                         terminal.say, terminal.complain, ask)
