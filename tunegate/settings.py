"""Settings: environment variables ``TUNEGATE_*``, overridable by ``tunegate`` CLI flags.

Every setting is documented in README.md ("Settings"); keep the two in step.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

MiB = 1024 * 1024


def _bool(value: str, name: str) -> bool:
    lowered = value.strip().lower()
    if lowered in {"1", "true", "yes", "on", "enabled"}:
        return True
    if lowered in {"0", "false", "no", "off", "disabled"}:
        return False
    raise ValueError(f"{name} must be enabled/disabled (or true/false), got {value!r}")


STAGES = ("validate", "train")


def _stages(value: str) -> tuple[str, ...]:
    stages = tuple(part.strip() for part in value.split(",") if part.strip())
    unknown = set(stages) - set(STAGES)
    if unknown or not stages:
        raise ValueError(f"TUNEGATE_WORKER_STAGES takes a comma list of {STAGES}, got {value!r}")
    return stages


@dataclass(frozen=True)
class Settings:
    """Everything a tunegate process needs to know about its environment."""

    data_dir: Path = field(default_factory=lambda: Path(".tunegate"))
    # SQLAlchemy URL; empty means SQLite inside data_dir.
    database_url: str = ""
    host: str = "127.0.0.1"
    port: int = 8000
    # False = gateway mode: /v1/fine_tuning/* answers the seed gateway's 501.
    fine_tuning: bool = True
    max_upload_bytes: int = 512 * MiB
    # Extra base models: GGUF files and Hugging Face folders placed here by the operator.
    models_dir: Path | None = None
    # Where converted base models are cached; shareable between data folders.
    model_cache_dir: Path | None = None
    # Start one worker subprocess next to the API (the embedded one-command setup).
    embedded_worker: bool = True
    # What workers do: "validate" (check files; torch-free) and/or "train". Splitting them lets
    # a small host validate while GPU hosts train.
    worker_stages: tuple[str, ...] = ("validate", "train")
    # Seconds without a heartbeat after which a worker's job is handed to another worker.
    heartbeat_timeout: float = 60.0
    poll_interval: float = 0.5
    # Longest training example in tokens; longer ones are cut from the end (with a warning).
    max_seq_len: int = 2048
    # Models (base or fine-tuned) kept loaded by llama.cpp for chat/completions, least recently
    # used dropped first; and the context window (prompt + completion tokens) each one gets.
    inference_cache_size: int = 4
    inference_context: int = 2048
    project_id: str = "default"
    organization_id: str = "org-local"

    @property
    def sqlalchemy_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'tunegate.sqlite3').resolve()}"

    @property
    def model_cache(self) -> Path:
        """Converted base models (a GGUF dequantized once, reloaded in a second)."""
        return self.model_cache_dir if self.model_cache_dir is not None else self.data_dir / "models"

    @property
    def files_dir(self) -> Path:
        return self.data_dir / "files"

    @property
    def base_models_dir(self) -> Path:
        return self.models_dir if self.models_dir is not None else self.data_dir / "base-models"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Read ``TUNEGATE_*`` variables, then apply keyword overrides that are not None."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        if "TUNEGATE_DATA" in env:
            values["data_dir"] = Path(env["TUNEGATE_DATA"])
        if "TUNEGATE_DATABASE_URL" in env:
            values["database_url"] = env["TUNEGATE_DATABASE_URL"]
        if "TUNEGATE_HOST" in env:
            values["host"] = env["TUNEGATE_HOST"]
        if "TUNEGATE_PORT" in env:
            values["port"] = int(env["TUNEGATE_PORT"])
        if "TUNEGATE_FINE_TUNING" in env:
            values["fine_tuning"] = _bool(env["TUNEGATE_FINE_TUNING"], "TUNEGATE_FINE_TUNING")
        if "TUNEGATE_MAX_UPLOAD_BYTES" in env:
            values["max_upload_bytes"] = int(env["TUNEGATE_MAX_UPLOAD_BYTES"])
        if "TUNEGATE_MODELS_DIR" in env:
            values["models_dir"] = Path(env["TUNEGATE_MODELS_DIR"])
        if "TUNEGATE_MODEL_CACHE" in env:
            values["model_cache_dir"] = Path(env["TUNEGATE_MODEL_CACHE"])
        if "TUNEGATE_WORKER" in env:
            values["embedded_worker"] = env["TUNEGATE_WORKER"].strip().lower() != "external"
        if "TUNEGATE_WORKER_STAGES" in env:
            values["worker_stages"] = _stages(env["TUNEGATE_WORKER_STAGES"])
        if "TUNEGATE_HEARTBEAT_TIMEOUT" in env:
            values["heartbeat_timeout"] = float(env["TUNEGATE_HEARTBEAT_TIMEOUT"])
        if "TUNEGATE_MAX_SEQ_LEN" in env:
            values["max_seq_len"] = int(env["TUNEGATE_MAX_SEQ_LEN"])
        if "TUNEGATE_INFERENCE_CACHE" in env:
            values["inference_cache_size"] = int(env["TUNEGATE_INFERENCE_CACHE"])
        if "TUNEGATE_INFERENCE_CONTEXT" in env:
            values["inference_context"] = int(env["TUNEGATE_INFERENCE_CONTEXT"])
        values.update({key: value for key, value in overrides.items() if value is not None})
        return replace(cls(), **values)
