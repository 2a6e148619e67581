"""``tunegate migrate --from SOURCE``: bring fine-tuning jobs from an OpenAI-compatible API (OpenAI
itself, or another tunegate) into a tunegate server, through both servers' HTTP APIs.

First an inventory (every job, its files, its fine-tuned model and checkpoints, its base's
shutdown date where the source gives one), then the plan (each succeeded job on a local base: an
explicit ``--map``, else the target's alias table), then the move: the training and validation
files copied in under their names, each job recreated with the same method, hyperparameters,
suffix, seed and metadata (plus the source job's id and the old model's name, which make the old
name answer through the new model once the job succeeds: tunegate.domain.former_names), and the
result files kept beside the state file. A failure names its item, and the rest goes on.

Running it again is safe: what :class:`MigrationState` recorded is checked on the target, and
what it lost (a kill between an upload and the state's write) is found there again, so nothing
is copied twice. The source's 429 (with ``Retry-After``) and 5xx answers are retried by the
openai SDK; the source key is only ever sent to the source.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunegate.client.connection import short_reason as describe
from tunegate.client.migration_state import MigrationState
from tunegate.client.recording import Messages, Recorder, RecordFailed, prompts_in
from tunegate.ids import FORMER_MODEL_KEY, SOURCE_JOB_KEY

if TYPE_CHECKING:
    from openai import OpenAI

OPENAI_URL = "https://api.openai.com/v1"
# How often the SDK asks again after a 429 (waiting as Retry-After says), a 5xx or a dropped
# connection, with its own backoff: a large migration meets a rate limit more than twice.
SOURCE_RETRIES = 8
METADATA_LIMIT = 16  # OpenAI's: pairs per object
MOVED, FAILED, SKIPPED, PLANNED = "moved", "failed", "skipped", "planned"


class ItemFailed(Exception):
    """One item of the move could not be moved; ``str()`` names it and says why."""


@dataclass(frozen=True)
class SourceJob:
    """A source job as the inventory saw it."""

    id: str
    status: str
    model: str
    fine_tuned_model: str | None
    training_file: str
    validation_file: str | None
    method: dict[str, Any] | None
    seed: int | None
    metadata: dict[str, str]
    result_files: list[str]
    suffix: str | None = None
    checkpoints: list[str] = field(default_factory=list)
    shutdown_date: str | None = None


def method_of(job: Any) -> dict[str, Any] | None:
    """The job's ``method``; for a job from before methods, its top-level hyperparameters as
    a supervised method (what they meant then)."""
    if job.method is not None:
        return dict(job.method.model_dump(exclude_none=True))
    if job.hyperparameters is not None:
        return {"type": "supervised", "supervised": {
            "hyperparameters": job.hyperparameters.model_dump(exclude_none=True)}}
    return None


def suffix_of(job: Any) -> str | None:
    """The job's ``user_provided_suffix`` (not in the SDK's typed job), else the suffix inside
    its model's name ``ft:{base}:{org}:{suffix}:{id}``."""
    given = (job.model_extra or {}).get("user_provided_suffix")
    if given:
        return str(given)
    parts = (job.fine_tuned_model or "").split(":")
    return (parts[3] or None) if len(parts) == 5 else None


@dataclass
class Outcome:
    """One row of the final table."""

    job: SourceJob
    base: str
    status: str = PLANNED
    target_job: str = ""
    note: str = ""


def inventory(source: OpenAI, say: Callable[[str], None]) -> list[SourceJob]:
    """Every job of the source, oldest first, with its checkpoints and its base's shutdown date
    (reading a job's checkpoints or its base may fail: the job is listed without them)."""
    import openai

    jobs = list(source.fine_tuning.jobs.list(limit=100))
    jobs.reverse()  # newest first at the source: moved in the order they were made
    shutdown: dict[str, str | None] = {}
    found = []
    for number, job in enumerate(jobs, 1):
        say(f"inventory {number}/{len(jobs)}: {job.id}")
        checkpoints: list[str] = []
        if job.status == "succeeded":
            # Optional: a source that lists no checkpoints still migrates.
            with contextlib.suppress(openai.APIStatusError):
                checkpoints = [c.fine_tuned_model_checkpoint
                               for c in source.fine_tuning.jobs.checkpoints.list(job.id)]
        if job.model not in shutdown:
            try:
                # Not every SDK version types it: read it as the source sent it.
                base = source.models.retrieve(job.model).model_dump()
                shutdown[job.model] = base.get("shutdown_date")
            except openai.APIStatusError:
                shutdown[job.model] = None
        method = method_of(job)
        found.append(SourceJob(
            id=job.id, status=job.status, model=job.model, fine_tuned_model=job.fine_tuned_model,
            training_file=job.training_file, validation_file=job.validation_file,
            method=method, seed=job.seed, metadata=dict(job.metadata or {}),
            result_files=list(job.result_files or []), suffix=suffix_of(job),
            checkpoints=checkpoints,
            shutdown_date=shutdown[job.model]))
    return found


def plan(jobs: Iterable[SourceJob], mapping: Mapping[str, str]) -> list[Outcome]:
    """A row per job: succeeded ones move to their mapped base (or the same name, which the
    target's alias table resolves); the others are listed as skipped."""
    rows = []
    for job in jobs:
        row = Outcome(job, mapping.get(job.model, job.model))
        if job.status != "succeeded" or not job.fine_tuned_model:
            row.status, row.note = SKIPPED, f"status {job.status}: no model to bring"
        rows.append(row)
    return rows


@dataclass
class Mover:
    """Copies files and recreates jobs, recording each in ``state`` as soon as it exists."""

    source: OpenAI
    target: OpenAI
    state: MigrationState
    say: Callable[[str], None]
    results_dir: Path

    def copy_file(self, file_id: str) -> str:
        """The target's copy of source file ``file_id``, uploaded only when none exists yet."""
        import openai

        recorded = self.state.files.get(file_id)
        if recorded and self._exists(recorded["target"]):
            return str(recorded["target"])
        try:
            info = self.source.files.retrieve(file_id)
            content = self.source.files.content(file_id).read()
        except openai.OpenAIError as error:
            raise ItemFailed(f"file {file_id}: the source did not serve it: "
                             f"{describe(error)}") from None
        digest = hashlib.sha256(content).hexdigest()
        copy = self._find_copy(info.filename, content, digest)
        if copy is None:
            self.say(f"  copying {file_id} ({info.filename}, {len(content):,} bytes)")
            try:
                copy = self.target.files.create(file=(info.filename, io.BytesIO(content)),
                                                purpose="fine-tune").id
            except openai.OpenAIError as error:
                raise ItemFailed(f"file {file_id} ({info.filename}): the target refused it: "
                                 f"{describe(error)}") from None
        else:
            self.say(f"  {file_id} ({info.filename}) is already there as {copy}")
        self.state.files[file_id] = {"target": copy, "filename": info.filename, "sha256": digest}
        self.state.save()
        return copy

    def _exists(self, target_id: str) -> bool:
        import openai

        try:
            self.target.files.retrieve(target_id)
        except openai.NotFoundError:
            return False  # deleted since, or another project's: copied again
        return True

    def _find_copy(self, filename: str, content: bytes, digest: str) -> str | None:
        """A fine-tune file of the target with this name and these bytes (one uploaded by a
        run killed before it could record it)."""
        for candidate in self.target.files.list(purpose="fine-tune"):
            if candidate.filename == filename and candidate.bytes == len(content):
                existing = self.target.files.content(candidate.id).read()
                if hashlib.sha256(existing).hexdigest() == digest:
                    return candidate.id
        return None

    def recreate(self, row: Outcome) -> None:
        """Copy the job's files, then create it on the target unless it exists already."""
        import openai

        job = row.job
        recorded = self.state.jobs.get(job.id)
        existing = self._find_job(job.id, recorded)
        if existing is not None:
            row.target_job, row.note = existing, "created by an earlier run"
            row.status = MOVED
            self._record_job(job, existing)
            return
        training = self.copy_file(job.training_file)
        validation = self.copy_file(job.validation_file) if job.validation_file else None
        metadata = {**job.metadata, SOURCE_JOB_KEY: job.id}
        if job.fine_tuned_model:
            metadata[FORMER_MODEL_KEY] = job.fine_tuned_model
        if len(metadata) > METADATA_LIMIT:
            raise ItemFailed(f"job {job.id}: its metadata has {len(job.metadata)} pairs; the "
                             f"move adds 2 and a job holds at most {METADATA_LIMIT}")
        request: dict[str, Any] = {"model": row.base, "training_file": training,
                                   "metadata": metadata}
        for name, value in (("validation_file", validation), ("suffix", job.suffix),
                            ("seed", job.seed), ("method", job.method)):
            if value is not None:
                request[name] = value
        try:
            created = self.target.fine_tuning.jobs.create(**request)
        except openai.OpenAIError as error:
            mapped = "" if row.base != job.model else (
                f" (base {job.model} is not in --map, so the target's alias table decides)")
            raise ItemFailed(f"job {job.id}: the target refused it{mapped}: "
                             f"{describe(error)}") from None
        self._record_job(job, created.id)
        row.target_job, row.status = created.id, MOVED

    def _find_job(self, source_job: str, recorded: Mapping[str, Any] | None) -> str | None:
        import openai

        if recorded:
            try:
                return self.target.fine_tuning.jobs.retrieve(recorded["target"]).id
            except openai.NotFoundError:
                pass
        for found in self.target.fine_tuning.jobs.list(metadata={SOURCE_JOB_KEY: source_job}):
            return found.id  # the newest: a run killed before it recorded the job
        return None

    def _record_job(self, job: SourceJob, target_job: str) -> None:
        self.state.jobs[job.id] = {"target": target_job, "former_model": job.fine_tuned_model}
        self.state.save()

    def keep_results(self, job: SourceJob) -> list[Path]:
        """The job's result files (per-step metrics, CSV) saved under ``results_dir``."""
        import openai

        kept = []
        folder = self.results_dir / job.id
        for file_id in job.result_files:
            path = folder / f"{file_id}.csv"
            if not path.exists():
                try:
                    content = self.source.files.content(file_id).read()
                except openai.OpenAIError as error:
                    raise ItemFailed(f"result file {file_id} of job {job.id}: "
                                     f"{describe(error)}") from None
                folder.mkdir(parents=True, exist_ok=True)
                partial = path.with_suffix(".part")
                partial.write_bytes(content)
                partial.replace(path)
            kept.append(path)
        return kept


def plan_lines(rows: list[Outcome]) -> list[str]:
    """The inventory and plan, one block per job."""
    lines = []
    for row in rows:
        job = row.job
        verb = "move" if row.status == PLANNED else row.status
        lines.append(f"{job.id}  {job.status}  {job.fine_tuned_model or '-'}")
        shutdown = f" (shuts down {job.shutdown_date})" if job.shutdown_date else ""
        lines.append(f"  {verb}: base {job.model}{shutdown} -> {row.base}"
                     + (f"; {row.note}" if row.note else ""))
        files = ", ".join(f for f in (job.training_file, job.validation_file) if f)
        lines.append(f"  files: {files}; checkpoints: {len(job.checkpoints)}; result files: "
                     f"{len(job.result_files)}")
    return lines


def outcome_table(rows: list[Outcome]) -> list[str]:
    """The final table: what moved where, what did not and why."""
    table = [("source job", "old model", "new job", "status", "note")]
    table += [(row.job.id, row.job.fine_tuned_model or "-", row.target_job or "-", row.status,
               row.note) for row in rows]
    widths = [max(len(line[column]) for line in table) for column in range(4)]
    return ["  ".join([*(cell.ljust(width) for cell, width in zip(line[:4], widths,
                                                                   strict=True)), line[4]])
            .rstrip() for line in table]


@dataclass(frozen=True)
class Choices:
    """What the command line asked for."""

    mapping: Mapping[str, str]
    dry_run: bool = False
    yes: bool = False
    record: bool = False  # the old models' answers, as evals (tunegate.client.recording)
    prompts: tuple[Messages, ...] = ()  # --prompts, added to each validation file's
    max_tokens: int = 256


def run_migration(source: OpenAI, target: OpenAI, state: MigrationState, choices: Choices,
                  say: Callable[[str], None], complain: Callable[[str], None],
                  ask: Callable[[str], bool]) -> int:
    """Inventory, plan, (after ``ask`` or ``--yes``) the move, and the table; exit code 0 when
    every planned job moved, 1 otherwise."""
    import openai

    try:
        jobs = inventory(source, say)
    except openai.OpenAIError as error:
        complain(f"error: cannot read the jobs of the source {state.source}: {describe(error)}")
        return 1
    rows = plan(jobs, choices.mapping)
    for line in plan_lines(rows):
        say(line)
    planned = [row for row in rows if row.status == PLANNED]
    if not planned:
        say("nothing to move")
        return 0
    if choices.dry_run:
        say(f"dry run: {len(planned)} job(s) would move into {state.target}")
        return 0
    if not choices.yes and not ask(f"Move {len(planned)} job(s) into {state.target}?"):
        complain("nothing moved (add --yes to answer yes in a script)")
        return 1
    try:
        target.models.list()  # one clear line for a target that is down, not one per job
    except openai.OpenAIError as error:
        complain(f"error: cannot use the target {state.target}: {describe(error)}")
        return 1
    mover = Mover(source, target, state, say, state.path.with_suffix(".results"))
    for number, row in enumerate(planned, 1):
        say(f"[{number}/{len(planned)}] {row.job.id} -> {row.base}")
        try:
            mover.recreate(row)
            kept = mover.keep_results(row.job)
            if kept:
                row.note = "; ".join(filter(None, (row.note, f"results in {kept[0].parent}")))
        except ItemFailed as failure:
            row.status, row.note = FAILED, str(failure)
            complain(f"error: {failure}")
        except openai.OpenAIError as error:  # the target or source went away mid-item
            row.status, row.note = FAILED, f"job {row.job.id}: {describe(error)}"
            complain(f"error: {row.note}")
    if choices.record:
        with warnings.catch_warnings():  # the SDK warns that OpenAI's own Evals API is shut
            warnings.filterwarnings("ignore", "The Evals API is deprecated")
            record_answers(source, target, state, planned, choices, say, complain)
    for line in outcome_table(rows):
        say(line)
    return 1 if any(row.status == FAILED for row in rows) else 0


def record_answers(source: OpenAI, target: OpenAI, state: MigrationState, rows: list[Outcome],
                   choices: Choices, say: Callable[[str], None],
                   complain: Callable[[str], None]) -> None:
    """Each old model's answers on its validation prompts and ``--prompts``, kept as an eval on
    the target; a failure is the row's and the next model goes on."""
    import openai

    recorder = Recorder(source, target, state, say, choices.max_tokens)
    for row in rows:
        job = row.job
        if not job.fine_tuned_model:
            continue
        say(f"recording {job.fine_tuned_model}")
        try:
            prompts = list(choices.prompts)
            if job.validation_file:
                try:
                    content = source.files.content(job.validation_file).read()
                except openai.OpenAIError as error:
                    raise RecordFailed(f"validation file {job.validation_file}: "
                                       f"{describe(error)}") from None
                prompts = prompts_in(content) + prompts
            folder = state.path.with_suffix(".results") / job.id
            evaluation = recorder.record(job.fine_tuned_model, prompts, folder)
        except RecordFailed as failure:
            complain(f"error: {failure}")
            row.note = "; ".join(filter(None, (row.note, f"not recorded: {failure}")))
            if row.status == MOVED:
                row.status = FAILED
            continue
        row.note = "; ".join(filter(None, (row.note, f"answers in eval {evaluation}")))
