import pytest

from tunegate.domain.jobs import TERMINAL, TRANSITIONS, JobStatus, check_transition, sources_of
from tunegate.errors import Conflict


def test_every_status_has_a_row_and_terminal_states_have_no_exit() -> None:
    assert set(TRANSITIONS) == set(JobStatus)
    for status in TERMINAL:
        assert TRANSITIONS[status] == frozenset()


@pytest.mark.parametrize("source", sorted(set(JobStatus) - TERMINAL))
def test_any_unfinished_job_can_be_cancelled(source: JobStatus) -> None:
    check_transition("ftjob-x", source, JobStatus.CANCELLED)


@pytest.mark.parametrize("source", sorted(TERMINAL))
def test_finished_jobs_cannot_be_cancelled(source: JobStatus) -> None:
    with pytest.raises(Conflict) as raised:
        check_transition("ftjob-x", source, JobStatus.CANCELLED)
    assert raised.value.status == 409
    assert raised.value.code == "invalid_job_status"
    assert raised.value.message == f"Fine-tuning job ftjob-x {FINISHED[source]} and cannot be cancelled."


# How a finished job's status reads in a sentence ("is succeeded" does not).
FINISHED = {JobStatus.SUCCEEDED: "has already succeeded", JobStatus.FAILED: "has already failed",
            JobStatus.CANCELLED: "has already been cancelled"}


@pytest.mark.parametrize(("source", "reads"), [
    (JobStatus.VALIDATING_FILES, "is validating_files"), (JobStatus.QUEUED, "is queued"),
    (JobStatus.PAUSED, "is paused"), (JobStatus.SUCCEEDED, "has already succeeded"),
])
def test_a_refused_pause_reads_as_a_sentence(source: JobStatus, reads: str) -> None:
    if source is JobStatus.QUEUED:
        source, target, verb = JobStatus.QUEUED, JobStatus.QUEUED, "resumed"
    else:
        target, verb = JobStatus.PAUSED, "paused"
    with pytest.raises(Conflict) as raised:
        check_transition("ftjob-x", source, target, only_from=None if verb == "paused"
                         else frozenset({JobStatus.PAUSED}))
    assert raised.value.message.startswith(f"Fine-tuning job ftjob-x {reads} and cannot be {verb}")


def test_pause_and_resume_edges() -> None:
    assert sources_of(JobStatus.PAUSED) == {JobStatus.RUNNING, JobStatus.QUEUED}
    check_transition("ftjob-x", JobStatus.PAUSED, JobStatus.QUEUED)
    with pytest.raises(Conflict, match="cannot be paused"):
        check_transition("ftjob-x", JobStatus.VALIDATING_FILES, JobStatus.PAUSED)
    with pytest.raises(Conflict, match="cannot be resumed"):
        check_transition("ftjob-x", JobStatus.SUCCEEDED, JobStatus.QUEUED)


def test_only_running_jobs_succeed() -> None:
    assert sources_of(JobStatus.SUCCEEDED) == {JobStatus.RUNNING}


def test_the_docs_and_the_contract_show_the_table_as_it_is() -> None:
    """One diagram, rendered from EDGES; the copies must equal it (regenerate with
    ``python -c "from tunegate.domain.jobs import state_diagram; print(state_diagram())"``)."""
    from pathlib import Path

    from tunegate.domain.jobs import state_diagram

    root = Path(__file__).resolve().parents[2]
    diagram = state_diagram()
    assert f"```\n{diagram}```" in (root / "docs" / "jobs.md").read_text(encoding="utf-8")
    indented = "".join(f"            {line}\n" for line in diagram.splitlines())
    assert f"            ```\n{indented}            ```" in (root / "openapi.yaml").read_text(
        encoding="utf-8")


def test_every_status_says_what_entering_it_does() -> None:
    from tunegate.domain.jobs import ON_ENTRY, TERMINAL, JobStatus, entry_changes

    assert set(ON_ENTRY) == set(JobStatus)
    for status in JobStatus:
        changes = entry_changes(status, 123)
        assert ("finished_at" in changes) == (status in TERMINAL)
        assert ("estimated_finish" in changes) == (status is not JobStatus.RUNNING
                                                   and status is not JobStatus.VALIDATING_FILES)


def test_progress_recorded_after_running_sets_no_estimate() -> None:
    """Every edge out of ``running`` clears ``estimated_finish`` on entry, and the progress a
    pause still records (the step in flight) may not set it again."""
    from tunegate.domain.jobs import ON_ENTRY, TRANSITIONS, JobStatus, progress_changes

    changes = {"estimated_finish": 99, "trained_tokens": 5}
    for target in TRANSITIONS[JobStatus.RUNNING]:
        assert ON_ENTRY[target].clears_estimate, target
        assert progress_changes(target, changes) == {"trained_tokens": 5}
    assert progress_changes(JobStatus.RUNNING, changes) == changes
