"""Table definitions (SQLAlchemy Core). Changes go through a numbered migration as well."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

metadata = MetaData()


def object_id() -> String:
    """Ids compare byte-wise everywhere (PostgreSQL's locale collations would not)."""
    return String(64).with_variant(String(64, collation="C"), "postgresql")  # type: ignore[return-value]


# Ids sort by creation time (tunegate.ids), so every listing orders and pages by primary key.
files = Table(
    "files",
    metadata,
    Column("id", object_id(), primary_key=True),
    Column("project_id", String(64), nullable=False),
    Column("bytes", BigInteger, nullable=False),  # up to 8 GiB from the Uploads API (0002)
    Column("created_at", Integer, nullable=False),
    Column("filename", Text, nullable=False),
    Column("purpose", String(32), nullable=False),
    Column("expires_at", Integer),
    Column("status", String(16), nullable=False),
    Column("status_details", Text),
    Index("ix_files_project", "project_id", "id"),
)

jobs = Table(
    "jobs",
    metadata,
    Column("id", object_id(), primary_key=True),
    Column("project_id", String(64), nullable=False),
    Column("created_at", Integer, nullable=False),
    Column("model", Text, nullable=False),
    Column("organization_id", String(64), nullable=False),
    Column("status", String(32), nullable=False),
    Column("training_file", String(64), nullable=False),
    Column("validation_file", String(64)),
    Column("method", JSON, nullable=False),
    Column("seed", Integer, nullable=False),
    Column("suffix", String(64)),
    Column("metadata", JSON),
    Column("integrations", JSON),
    Column("fine_tuned_model", Text),
    Column("finished_at", Integer),
    Column("trained_tokens", Integer),
    Column("error", JSON),
    Column("result_files", JSON, nullable=False),
    Column("estimated_finish", Integer),
    Column("worker_id", String(64)),
    Column("heartbeat_at", Float),
    Index("ix_jobs_project", "project_id", "id"),
    Index("ix_jobs_status", "status", "id"),
)

job_events = Table(
    "job_events",
    metadata,
    Column("id", object_id(), primary_key=True),
    Column("job_id", object_id(), nullable=False),
    Column("created_at", Integer, nullable=False),
    Column("level", String(8), nullable=False),
    Column("message", Text, nullable=False),
    Column("type", String(16), nullable=False),
    Column("data", JSON),
    Index("ix_job_events_job", "job_id", "id"),
)

checkpoints = Table(
    "checkpoints",
    metadata,
    Column("id", object_id(), primary_key=True),
    Column("job_id", object_id(), nullable=False),
    Column("created_at", Integer, nullable=False),
    Column("fine_tuned_model_checkpoint", Text, nullable=False),
    Column("step_number", Integer, nullable=False),
    Column("metrics", JSON, nullable=False),
    Column("path", Text, nullable=False),
    Index("ix_checkpoints_job", "job_id", "id"),
)

fine_tuned_models = Table(
    "fine_tuned_models",
    metadata,
    Column("id", String(255), primary_key=True),
    Column("project_id", String(64), nullable=False),
    Column("job_id", object_id(), nullable=False),
    Column("base_model", Text, nullable=False),
    Column("created_at", Integer, nullable=False),
    Column("kind", String(16), nullable=False),
    Column("path", Text, nullable=False),
    Index("ix_models_project", "project_id", "id"),
)

# The Uploads API (migration 0002). Parts have rows only while their upload is pending.
uploads = Table(
    "uploads",
    metadata,
    Column("id", object_id(), primary_key=True),
    Column("project_id", String(64), nullable=False),
    Column("created_at", Integer, nullable=False),
    Column("expires_at", Integer, nullable=False),
    Column("filename", Text, nullable=False),
    Column("purpose", String(32), nullable=False),
    Column("bytes", BigInteger, nullable=False),
    Column("mime_type", String(255), nullable=False),
    Column("status", String(16), nullable=False),
    Column("file_expires_after", Integer),
    Column("file_id", String(64)),
    Index("ix_uploads_project", "project_id", "id"),
    Index("ix_uploads_status", "status", "expires_at"),
)

upload_parts = Table(
    "upload_parts",
    metadata,
    Column("id", object_id(), primary_key=True),
    Column("upload_id", object_id(), nullable=False),
    Column("created_at", Integer, nullable=False),
    Column("bytes", BigInteger, nullable=False),
    Index("ix_upload_parts_upload", "upload_id", "id"),
)

# Fine-tuned models (and checkpoints) shared with other projects (migration 0002).
checkpoint_permissions = Table(
    "checkpoint_permissions",
    metadata,
    Column("id", object_id(), primary_key=True),
    Column("model_id", String(255), nullable=False),
    Column("project_id", String(64), nullable=False),
    Column("created_at", Integer, nullable=False),
    Index("ix_permissions_model_project", "model_id", "project_id", unique=True),
    Index("ix_permissions_project", "project_id", "model_id"),
)

# One row, made by migration 0003: the id the data folder records (tunegate.domain.data_folder).
store_identity = Table("store_identity", metadata, Column("id", String(64), primary_key=True))

# The Evals API (migration 0004). A run's counts live on its row (``totals``), grown in the
# transaction that records each output item; (run_id, datasource_item_id) is unique, so an
# item is recorded once whatever a resumed worker retries.
evals = Table(
    "evals",
    metadata,
    Column("id", object_id(), primary_key=True),
    Column("project_id", String(64), nullable=False),
    Column("created_at", Integer, nullable=False),
    Column("updated_at", Integer, nullable=False),
    Column("name", Text, nullable=False),
    Column("data_source_config", JSON, nullable=False),
    Column("testing_criteria", JSON, nullable=False),
    Column("metadata", JSON),
    Index("ix_evals_project", "project_id", "id"),
)

eval_runs = Table(
    "eval_runs",
    metadata,
    Column("id", object_id(), primary_key=True),
    Column("eval_id", object_id(), nullable=False),
    Column("project_id", String(64), nullable=False),
    Column("created_at", Integer, nullable=False),
    Column("status", String(16), nullable=False),
    Column("model", Text, nullable=False),
    Column("name", Text, nullable=False),
    Column("data_source", JSON, nullable=False),
    Column("metadata", JSON),
    Column("error", JSON, nullable=False),
    Column("totals", JSON, nullable=False),
    Column("report_url", Text, nullable=False),
    Column("worker_id", String(64)),
    Column("heartbeat_at", Float),
    Index("ix_eval_runs_eval", "eval_id", "id"),
    Index("ix_eval_runs_status", "status", "id"),
)

eval_output_items = Table(
    "eval_output_items",
    metadata,
    Column("id", object_id(), primary_key=True),
    Column("run_id", object_id(), nullable=False),
    Column("eval_id", object_id(), nullable=False),
    Column("project_id", String(64), nullable=False),
    Column("created_at", Integer, nullable=False),
    Column("status", String(8), nullable=False),
    Column("datasource_item_id", Integer, nullable=False),
    Column("datasource_item", JSON, nullable=False),
    Column("results", JSON, nullable=False),
    Column("sample", JSON, nullable=False),
    Column("usage", JSON, nullable=False),
    Column("errored", Integer, nullable=False),
    Index("ix_eval_output_items_run", "run_id", "id"),
    Index("ix_eval_output_items_row", "run_id", "datasource_item_id", unique=True),
)

# Webhooks (migration 0005): each project's endpoints, and the outbox: one delivery row per
# (event, subscribed endpoint), written in the transaction of the status change that causes the
# event, sent and retried by a worker (tunegate.worker.webhook_delivery).
webhook_endpoints = Table(
    "webhook_endpoints",
    metadata,
    Column("id", object_id(), primary_key=True),
    Column("project_id", String(64), nullable=False),
    Column("created_at", Integer, nullable=False),
    Column("updated_at", Integer, nullable=False),
    Column("name", Text, nullable=False),
    Column("url", Text, nullable=False),
    Column("event_types", JSON, nullable=False),
    Column("secret", Text, nullable=False),
    Column("failing_since", Integer),
    Column("disabled_at", Integer),
    # A rotation that keeps the old secret: it signs beside the new one until then (0007).
    Column("previous_secret", Text),
    Column("previous_secret_until", Integer),
    Index("ix_webhook_endpoints_project", "project_id", "id"),
)

webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    Column("id", object_id(), primary_key=True),
    Column("endpoint_id", object_id(), nullable=False),
    Column("project_id", String(64), nullable=False),
    Column("event_id", String(64), nullable=False),
    Column("event_type", String(64), nullable=False),
    Column("object_id", String(64), nullable=False),
    Column("created_at", Integer, nullable=False),
    Column("body", Text, nullable=False),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", Float),
    Column("last_attempt_at", Float),
    Column("last_status_code", Integer),
    Column("last_error", Text),
    Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),
    Index("ix_webhook_deliveries_endpoint", "endpoint_id", "id"),
)

# Stored chat completions (migration 0006): what a ``store: true`` chat completion keeps
# (tunegate.domain.stored_completions). ``completion`` is the answer as the client got it.
stored_completions = Table(
    "stored_completions",
    metadata,
    Column("id", object_id(), primary_key=True),
    Column("project_id", String(64), nullable=False),
    Column("created_at", Integer, nullable=False),
    Column("model", Text, nullable=False),
    Column("metadata", JSON, nullable=False),
    Column("messages", JSON, nullable=False),
    Column("tools", JSON),
    Column("completion", JSON, nullable=False),
    Index("ix_stored_completions_project", "project_id", "id"),
)
