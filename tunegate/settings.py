"""Settings: environment variables ``TUNEGATE_*``, overridable by ``tunegate`` CLI flags.

Every setting is documented in docs/settings.md; keep the two in step (a test checks).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
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


STAGES = ("validate", "train", "evaluate")


def _stages(value: str) -> tuple[str, ...]:
    stages = tuple(part.strip() for part in value.split(",") if part.strip())
    unknown = set(stages) - set(STAGES)
    if unknown or not stages:
        raise ValueError(f"TUNEGATE_WORKER_STAGES takes a comma list of {STAGES}, got {value!r}")
    return stages


def _fine_tuning(value: str) -> bool:
    return _bool(value, "TUNEGATE_FINE_TUNING")


def _trainer_standby(value: str) -> bool:
    return _bool(value, "TUNEGATE_TRAINER_STANDBY")


def _serve_merged(value: str) -> bool:
    return _bool(value, "TUNEGATE_SERVE_MERGED")


TRAIN_DTYPE_ENV = "TUNEGATE_TRAIN_DTYPE"
TRAIN_DTYPES = ("auto", "bf16", "fp32")


def parse_train_dtype(value: str) -> str:
    """``TUNEGATE_TRAIN_DTYPE``: the number format of training (tunegate.training.precision)."""
    name = value.strip().lower() or "auto"
    if name not in TRAIN_DTYPES:
        raise ValueError(f"{TRAIN_DTYPE_ENV} takes one of {TRAIN_DTYPES}, got {value!r}")
    return name


def parse_memory(value: str) -> int:
    """An amount of memory: ``12GiB``, ``12G``, ``12GB``, ``512MiB`` or a number of bytes
    (binary units). Raises ValueError."""
    units = {"k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}
    cleaned = value.strip().lower().removesuffix("ib").removesuffix("b")
    scale = units.get(cleaned[-1:], 1)
    number = float(cleaned[:-1] if scale != 1 else cleaned)
    if number <= 0:
        raise ValueError(f"{value!r} is no amount of memory")
    return int(number * scale)


def _memory_limit(value: str) -> int:
    try:
        return parse_memory(value)
    except ValueError:
        raise ValueError(f"TUNEGATE_TRAINER_MEMORY_LIMIT takes an amount like 12GiB, got "
                         f"{value!r}") from None


CHECKPOINTING_MODES = ("auto", "on", "off")


def _gradient_checkpointing(value: str) -> str:
    name = value.strip().lower() or "auto"
    if name not in CHECKPOINTING_MODES:
        raise ValueError(f"TUNEGATE_GRADIENT_CHECKPOINTING takes one of {CHECKPOINTING_MODES}, "
                         f"got {value!r}")
    return name


EXECUTORS = ("local", "ray")


def _executor(value: str) -> str:
    name = value.strip().lower()
    if name not in EXECUTORS:
        raise ValueError(f"TUNEGATE_EXECUTOR takes one of {EXECUTORS}, got {value!r}")
    return name


def _at_least(name: str, low: float, kind: Callable[[str], Any] = float) -> Callable[[str], Any]:
    """A parser of numbers ``kind(value) >= low`` whose error names the variable."""
    def parse(value: str) -> Any:
        number = kind(value)
        if number < low:
            raise ValueError(f"{name}={value!r}: give a number of {low:g} or more")
        return number
    return parse


def _embedded(value: str) -> bool:
    return value.strip().lower() != "external"


# OpenAI's fine-tunable models (snapshots and the names that resolve to them; the reference's
# job `model` enum, token-limit table and SFT guide), which unchanged OpenAI code names. By
# default each is an alias of the embedded base model (tunegate.domain.catalog.EMBEDDED_MODEL_ID).
OPENAI_MODEL_NAMES = (
    "gpt-4.1-2025-04-14", "gpt-4.1", "gpt-4.1-mini-2025-04-14", "gpt-4.1-mini",
    "gpt-4.1-nano-2025-04-14", "gpt-4.1-nano", "gpt-4o-2024-08-06", "gpt-4o",
    "gpt-4o-mini-2024-07-18", "gpt-4o-mini", "o4-mini-2025-04-16", "o4-mini",
    "gpt-3.5-turbo", "gpt-3.5-turbo-0125", "gpt-3.5-turbo-1106", "gpt-3.5-turbo-0613",
    "babbage-002", "davinci-002",
)
DEFAULT_ALIAS_TARGET = "SmolLM2-135M-Instruct"
ALIASES_OFF = ("off", "disabled", "none")
ALL_OPENAI = "*"
Aliases = tuple[tuple[str, str], ...]


def _heartbeat(value: str) -> float:
    seconds = float(value)
    if not seconds > 0:  # 0 would send pings without pause
        raise ValueError(f"TUNEGATE_SSE_HEARTBEAT_SECONDS={value!r}: give a number of seconds "
                         "above 0")
    return seconds


def _log_format(value: str) -> str:
    from tunegate.logs import parse_format

    return parse_format(value)


def _networks(value: str) -> str:
    """``TUNEGATE_WEBHOOK_ALLOW_NETWORKS``: checked here (a bad CIDR stops the process at
    start), kept as text (the kernel imports nothing of ours to hold networks in)."""
    import ipaddress

    for part in value.split(","):
        if part.strip():
            try:
                ipaddress.ip_network(part.strip(), strict=False)
            except ValueError as exc:
                raise ValueError(f"TUNEGATE_WEBHOOK_ALLOW_NETWORKS: {exc}") from None
    return value


def _model_aliases(value: str) -> Aliases:
    """``TUNEGATE_MODEL_ALIASES``: a comma list of ``name=base`` entries (``*=base``: every name
    of ``OPENAI_MODEL_NAMES``); a later entry for a name replaces an earlier one. ``off`` (or an
    empty value) means no aliases."""
    text = value.strip()
    if text.lower() in ALIASES_OFF or not text:
        return ()
    aliases: dict[str, str] = {}
    for entry in text.split(","):
        name, equals, base = (part.strip() for part in entry.partition("="))
        if not equals or not name or not base or ":" in name or any(c.isspace() for c in name):
            raise ValueError(
                "TUNEGATE_MODEL_ALIASES takes 'off' or a comma list of name=base entries "
                f"(names without ':' or spaces; '*=base' for every OpenAI name), got {entry!r}")
        for alias in (OPENAI_MODEL_NAMES if name == ALL_OPENAI else (name,)):
            aliases.pop(alias, None)  # a later entry wins, and is listed where it was given
            aliases[alias] = base
    return tuple(aliases.items())


def _named_aliases(value: str) -> frozenset[str]:
    """The names ``TUNEGATE_MODEL_ALIASES`` gives one by one (not through ``*``): such an alias
    wins over an upstream model of the same name (``TUNEGATE_UPSTREAMS``), which is how a name
    is switched from the upstream to a local model."""
    text = value.strip()
    if text.lower() in ALIASES_OFF or not text:
        return frozenset()
    return frozenset(entry.partition("=")[0].strip() for entry in text.split(",")) - {ALL_OPENAI}


@dataclass(frozen=True)
class Upstream:
    """Another OpenAI-compatible endpoint whose models tunegate forwards chat and completions
    for (``TUNEGATE_UPSTREAMS``). The key is never held here: ``api_key_env`` names the
    environment variable it is read from, at each request."""

    name: str
    base_url: str  # ".../v1"
    api_key_env: str
    models: tuple[str, ...]

    def api_key(self) -> str:
        return os.environ.get(self.api_key_env, "") if self.api_key_env else ""


UPSTREAM_KEYS = {"name", "base_url", "api_key_env", "models"}


def _upstreams(value: str) -> tuple[Upstream, ...]:
    """``TUNEGATE_UPSTREAMS``: a JSON list of ``{name, base_url, api_key_env, models}``, given
    inline or as the path of a file holding it; empty means none."""
    text = value.strip()
    if not text:
        return ()
    if not text.startswith("["):
        try:
            text = Path(text).read_text(encoding="utf-8")
        except OSError as exc:
            raise ValueError(f"TUNEGATE_UPSTREAMS: cannot read {value!r}: {exc}") from None
    try:
        entries = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"TUNEGATE_UPSTREAMS is not JSON: {exc}") from None
    if not isinstance(entries, list):
        raise ValueError("TUNEGATE_UPSTREAMS takes a JSON list of upstreams")
    found: list[Upstream] = []
    seen: dict[str, str] = {}
    for entry in entries:
        upstream = _upstream(entry)
        for model in upstream.models:
            if model in seen:
                raise ValueError(f"TUNEGATE_UPSTREAMS: {model} is listed by both {seen[model]} "
                                 f"and {upstream.name}")
            seen[model] = upstream.name
        found.append(upstream)
    return tuple(found)


def _upstream(entry: Any) -> Upstream:
    """One upstream of ``TUNEGATE_UPSTREAMS``, its shape checked."""
    fields = entry if isinstance(entry, dict) else {}
    models = fields.get("models")
    if (not fields or set(fields) - UPSTREAM_KEYS or not isinstance(fields.get("base_url"), str)
            or not isinstance(models, list)
            or not all(isinstance(model, str) and model for model in models)):
        raise ValueError(
            "TUNEGATE_UPSTREAMS: each upstream is {\"name\": ..., \"base_url\": "
            "\"https://.../v1\", \"api_key_env\": \"VARIABLE\", \"models\": [names]}, "
            f"got {json.dumps(entry)[:200]}")
    return Upstream(name=str(fields.get("name") or fields["base_url"]),
                    base_url=fields["base_url"].rstrip("/"),
                    api_key_env=str(fields.get("api_key_env") or ""), models=tuple(models))


def format_aliases(aliases: Aliases) -> str:
    """The setting's value that gives ``aliases`` back."""
    return ",".join(f"{name}={base}" for name, base in aliases) or "off"


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
    # What workers do: "validate" (check files; torch-free), "train" and "evaluate" (eval runs;
    # torch-free). Splitting them lets a small host validate while GPU hosts train.
    worker_stages: tuple[str, ...] = ("validate", "train", "evaluate")
    # Seconds without a heartbeat after which a worker's job is handed to another worker.
    heartbeat_timeout: float = 60.0
    poll_interval: float = 0.5
    # Keep one trainer child waiting with torch & co. imported (tunegate.worker.standby).
    trainer_standby: bool = True
    # Longest training example in tokens; longer ones are cut from the end (with a warning).
    max_seq_len: int = 2048
    # Training's number format: "auto" (bfloat16 on CPUs with AMX/AVX-512-BF16, and on CUDA
    # autocast where supported), "bf16" or "fp32". The trainer child reads the variable itself
    # (tunegate.training.precision); parsing it here stops a bad value when a process starts.
    train_dtype: str = "auto"
    # The memory a trainer may use, in bytes (None: the machine's available memory when a job
    # starts). A job whose estimate (tunegate.training.estimate) is larger fails at once.
    trainer_memory_limit: int | None = None
    # "auto": gradient checkpointing only when the estimate says the activations would not fit
    # without it; "on" / "off" force it.
    gradient_checkpointing: str = "auto"
    # Models (base or fine-tuned) kept loaded by llama.cpp for chat/completions, least recently
    # used dropped first; and the context window (prompt + completion tokens) each one gets.
    inference_cache_size: int = 4
    inference_context: int = 2048
    # Requests one model process decodes at once (llama.cpp slots; more wait in its queue),
    # its threads (0: llama.cpp's choice), and seconds without a token before it counts as hung.
    inference_parallel: int = 4
    inference_threads: int = 0
    inference_timeout: float = 120.0
    # Serve fine-tuned models from a merged, Q8_0 copy (faster than base + adapter), keeping
    # at most this many bytes of copies; False serves base GGUF + LoRA adapter.
    serve_merged: bool = True
    merged_cache_bytes: int = 4096 * MiB
    # The project and organization of requests when no keys are configured, and of the
    # TUNEGATE_API_KEY key.
    project_id: str = "default"
    organization_id: str = "org-local"
    # API keys (tunegate.api.keys): a JSON file of hashed keys, and/or one key from the environment.
    # With neither, the API is open (and `serve` warns if it listens beyond the loopback).
    keys_file: Path | None = None
    api_key: str = field(default="", repr=False)  # never printed with the settings
    # Limits. Upload checks of `fine-tune` files: longest JSONL line in bytes, most examples.
    max_line_bytes: int = 4 * MiB
    max_examples: int = 100_000
    # Jobs of one project waiting or training at once (validating_files, queued, running).
    max_active_jobs: int = 8
    # Requests per minute per API key (a token bucket of this size); 0 switches it off.
    rate_limit: int = 600
    # Model names (OpenAI's, by default) that stand for a local base model: (name, base) pairs.
    model_aliases: Aliases = _model_aliases(f"{ALL_OPENAI}={DEFAULT_ALIAS_TARGET}")
    # Those of the aliases named one by one (not by "*"): they win over upstream models.
    named_aliases: frozenset[str] = frozenset()
    # Models served by other OpenAI-compatible endpoints, forwarded (tunegate.serving.upstream).
    upstreams: tuple[Upstream, ...] = ()
    # Seconds `serve` keeps an idle HTTP connection open: longer than clients keep theirs
    # (httpx 5 s, load balancers ~60 s), so that the client, not the server, closes it.
    keep_alive: float = 75.0
    # Seconds `serve` waits, on SIGTERM/SIGINT, for requests still being answered (a chat or an
    # event stream can run for hours) before it closes them and stops its worker.
    shutdown_grace: float = 10.0
    # Seconds of silence after which a live event stream sends a ": ping" comment, so that
    # proxies and clients see the connection is alive while a long step runs.
    sse_heartbeat: float = 15.0
    # Where a training run executes: "local" (a child process of the worker) or "ray" (an actor
    # on a Ray cluster node; tunegate.worker.ray_executor), the cluster's address ("auto": the
    # one `ray start` left on this host), and what one run reserves there.
    executor: str = "local"
    ray_address: str = "auto"
    ray_cpus_per_run: float = 1.0
    ray_gpus_per_run: float = 0.0
    # Eval runs: the OpenAI-compatible endpoint (".../v1") that generates samples and answers
    # grader models ("" = this server's own, http://host:port/v1), the key sent to it, and how
    # many requests a run keeps in flight (the serving pool's parallel slots, by default).
    eval_endpoint: str = ""
    eval_api_key: str = field(default="", repr=False)
    eval_concurrency: int = 4
    # The Python grader's sandbox (tunegate.graders.sandbox): OpenAI's limits by default, CPU
    # seconds (and the wall clock, plus a start-up allowance) and memory of one grade() call.
    python_grader_seconds: float = 120.0
    python_grader_memory_mb: int = 2048
    # Webhooks (docs/webhooks.md): networks outside the public internet that deliveries may
    # reach on purpose (CIDRs, e.g. "127.0.0.1/32,10.0.0.0/8"; refused otherwise), seconds an
    # attempt may take, the wait before the first retry (each later one doubles, up to an hour),
    # how long an event is retried, and how long an endpoint may fail before it is disabled.
    webhook_allow_networks: str = ""
    webhook_timeout: float = 10.0
    webhook_first_retry: float = 5.0
    webhook_retry_for: float = 72 * 3600.0
    webhook_disable_after: float = 5 * 24 * 3600.0
    # "text" for a terminal, "json" (one object a line) for a log pipeline (tunegate.logs).
    log_format: str = "text"

    @property
    def sqlalchemy_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'tunegate.sqlite3').resolve()}"

    @property
    def own_url(self) -> str:
        """This server's address as a process on its host reaches it (a wildcard listen
        address is not one to connect to)."""
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host
        return f"http://{host}:{self.port}"

    @property
    def eval_base_url(self) -> str:
        """Where a worker sends an eval run's chat completions."""
        return self.eval_endpoint.rstrip("/") if self.eval_endpoint else f"{self.own_url}/v1"

    @property
    def model_cache(self) -> Path:
        """Converted base models (a GGUF dequantized once, reloaded in a second)."""
        return self.model_cache_dir if self.model_cache_dir is not None else self.data_dir / "models"

    def job_dir(self, job_id: str) -> Path:
        """A job's work folder: its run state, checkpoints and final adapter."""
        return self.data_dir / "jobs" / job_id

    @property
    def merged_dir(self) -> Path:
        """Merged copies of fine-tuned models, for serving (a cache: safe to delete)."""
        return self.data_dir / "serving" / "merged"

    @property
    def logs_dir(self) -> Path:
        return self.data_dir / "logs"

    @property
    def files_dir(self) -> Path:
        return self.data_dir / "files"

    @property
    def uploads_dir(self) -> Path:
        """Parts of pending uploads (the Uploads API), one folder per upload."""
        return self.data_dir / "uploads"

    @property
    def base_models_dir(self) -> Path:
        return self.models_dir if self.models_dir is not None else self.data_dir / "base-models"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Read ``TUNEGATE_*`` variables, then apply keyword overrides that are not None."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {
            field_name: parse(env[variable])
            for variable, (field_name, parse) in ENVIRONMENT.items() if variable in env
        }
        if "TUNEGATE_MODEL_ALIASES" in env:  # one variable, two fields
            values["named_aliases"] = _named_aliases(env["TUNEGATE_MODEL_ALIASES"])
        values.update({key: value for key, value in overrides.items() if value is not None})
        return replace(cls(), **values)


# Environment variable -> (Settings field, parser). docs/settings.md lists them all.
ENVIRONMENT: dict[str, tuple[str, Callable[[str], Any]]] = {
    "TUNEGATE_DATA": ("data_dir", Path),
    "TUNEGATE_DATABASE_URL": ("database_url", str),
    "TUNEGATE_HOST": ("host", str),
    "TUNEGATE_PORT": ("port", int),
    "TUNEGATE_FINE_TUNING": ("fine_tuning", _fine_tuning),
    "TUNEGATE_MAX_UPLOAD_BYTES": ("max_upload_bytes", int),
    "TUNEGATE_MODELS_DIR": ("models_dir", Path),
    "TUNEGATE_MODEL_CACHE": ("model_cache_dir", Path),
    "TUNEGATE_WORKER": ("embedded_worker", _embedded),
    "TUNEGATE_WORKER_STAGES": ("worker_stages", _stages),
    "TUNEGATE_HEARTBEAT_TIMEOUT": ("heartbeat_timeout", float),
    "TUNEGATE_TRAINER_STANDBY": ("trainer_standby", _trainer_standby),
    "TUNEGATE_MAX_SEQ_LEN": ("max_seq_len", int),
    TRAIN_DTYPE_ENV: ("train_dtype", parse_train_dtype),
    "TUNEGATE_TRAINER_MEMORY_LIMIT": ("trainer_memory_limit", _memory_limit),
    "TUNEGATE_GRADIENT_CHECKPOINTING": ("gradient_checkpointing", _gradient_checkpointing),
    "TUNEGATE_INFERENCE_CACHE": ("inference_cache_size", int),
    "TUNEGATE_INFERENCE_CONTEXT": ("inference_context", int),
    "TUNEGATE_INFERENCE_PARALLEL": ("inference_parallel", int),
    "TUNEGATE_INFERENCE_THREADS": ("inference_threads", int),
    "TUNEGATE_INFERENCE_TIMEOUT": ("inference_timeout", float),
    "TUNEGATE_SERVE_MERGED": ("serve_merged", _serve_merged),
    "TUNEGATE_MERGED_CACHE_BYTES": ("merged_cache_bytes", int),
    "TUNEGATE_KEYS_FILE": ("keys_file", Path),
    "TUNEGATE_API_KEY": ("api_key", str),
    "TUNEGATE_MAX_LINE_BYTES": ("max_line_bytes", int),
    "TUNEGATE_MAX_EXAMPLES": ("max_examples", int),
    "TUNEGATE_MAX_ACTIVE_JOBS": ("max_active_jobs", int),
    "TUNEGATE_RATE_LIMIT": ("rate_limit", int),
    "TUNEGATE_MODEL_ALIASES": ("model_aliases", _model_aliases),
    "TUNEGATE_UPSTREAMS": ("upstreams", _upstreams),
    "TUNEGATE_KEEP_ALIVE": ("keep_alive", float),
    "TUNEGATE_SHUTDOWN_GRACE": ("shutdown_grace", float),
    "TUNEGATE_SSE_HEARTBEAT_SECONDS": ("sse_heartbeat", _heartbeat),
    "TUNEGATE_EXECUTOR": ("executor", _executor),
    "TUNEGATE_RAY_ADDRESS": ("ray_address", str),
    "TUNEGATE_RAY_CPUS": ("ray_cpus_per_run", _at_least("TUNEGATE_RAY_CPUS", 0)),
    "TUNEGATE_RAY_GPUS": ("ray_gpus_per_run", _at_least("TUNEGATE_RAY_GPUS", 0)),
    "TUNEGATE_EVAL_ENDPOINT": ("eval_endpoint", str),
    "TUNEGATE_EVAL_API_KEY": ("eval_api_key", str),
    "TUNEGATE_EVAL_CONCURRENCY": ("eval_concurrency", _at_least("TUNEGATE_EVAL_CONCURRENCY", 1, int)),
    "TUNEGATE_PYTHON_GRADER_SECONDS": ("python_grader_seconds",
                                       _at_least("TUNEGATE_PYTHON_GRADER_SECONDS", 0.1)),
    "TUNEGATE_PYTHON_GRADER_MEMORY_MB": ("python_grader_memory_mb",
                                         _at_least("TUNEGATE_PYTHON_GRADER_MEMORY_MB", 64, int)),
    "TUNEGATE_LOG_FORMAT": ("log_format", _log_format),
    "TUNEGATE_WEBHOOK_ALLOW_NETWORKS": ("webhook_allow_networks", _networks),
    "TUNEGATE_WEBHOOK_TIMEOUT": ("webhook_timeout", _at_least("TUNEGATE_WEBHOOK_TIMEOUT", 0.1)),
    "TUNEGATE_WEBHOOK_FIRST_RETRY": ("webhook_first_retry",
                                     _at_least("TUNEGATE_WEBHOOK_FIRST_RETRY", 0.1)),
    "TUNEGATE_WEBHOOK_RETRY_FOR": ("webhook_retry_for", _at_least("TUNEGATE_WEBHOOK_RETRY_FOR", 0)),
    "TUNEGATE_WEBHOOK_DISABLE_AFTER": ("webhook_disable_after",
                                       _at_least("TUNEGATE_WEBHOOK_DISABLE_AFTER", 0)),
}
