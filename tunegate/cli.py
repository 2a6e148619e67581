"""``tunegate serve`` (API, plus one embedded worker by default), ``tunegate worker`` and
``tunegate keys add`` (a new API key, printed once, its hash appended to the keys file),
``tunegate models add PATH`` (a base model checked and put into the models folder); the
client commands ``train``, ``jobs`` and ``chat`` talk to a server (``tunegate.client``)."""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

import uvicorn

from tunegate import logs
from tunegate.client.arguments import CLIENT_COMMANDS, add_client_commands
from tunegate.processes import die_with_parent
from tunegate.settings import Settings
from tunegate.supervision import EmbeddedWorker, StopsWorkerFirst

log = logging.getLogger("tunegate")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tunegate", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    for name, help_text in (("serve", "run the HTTP API (and an embedded worker)"),
                            ("worker", "run a worker that validates and trains jobs")):
        command = commands.add_parser(name, help=help_text)
        command.add_argument("--data", type=Path, help="data folder (TUNEGATE_DATA)")
        command.add_argument("--database-url", help="SQLAlchemy URL (TUNEGATE_DATABASE_URL)")
        command.add_argument("--models-dir", type=Path,
                             help="folder of extra base models (TUNEGATE_MODELS_DIR)")
    serve = commands.choices["serve"]
    serve.add_argument("--host", help="listen address (TUNEGATE_HOST, default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="listen port (TUNEGATE_PORT, default 8000)")
    serve.add_argument("--fine-tuning", choices=["enabled", "disabled"],
                       help="disabled = gateway mode (TUNEGATE_FINE_TUNING)")
    serve.add_argument("--max-upload-bytes", type=int,
                       help="largest accepted request body (TUNEGATE_MAX_UPLOAD_BYTES)")
    serve.add_argument("--worker", choices=["embedded", "external"],
                       help="start a worker subprocess or not (TUNEGATE_WORKER)")
    serve.add_argument("--keys-file", type=Path, help="API keys file (TUNEGATE_KEYS_FILE)")
    keys = commands.add_parser("keys", help="manage API keys")
    add = keys.add_subparsers(dest="keys_command", required=True).add_parser(
        "add", help="create a key, print it once and store only its hash")
    add.add_argument("--keys-file", type=Path,
                     help="the keys file to append to (TUNEGATE_KEYS_FILE)")
    add.add_argument("--project", required=True, help="the project the key acts for")
    add.add_argument("--org", help="its organization (default: org-local)")
    add.add_argument("--admin", action="store_true", help="may read every project's objects")
    add.add_argument("--name", help="a label for the key (default: the project)")
    models = commands.add_parser("models", help="manage the base models of the models folder")
    add_model = models.add_subparsers(dest="models_command", required=True).add_parser(
        "add", help="check a .gguf file and copy it into the models folder, or convert a "
        "Hugging Face folder into a .gguf there (llama.cpp's convert_hf_to_gguf.py)")
    add_model.add_argument("path", type=Path, help="a .gguf file or a folder with config.json")
    add_model.add_argument("--models-dir", type=Path,
                           help="the models folder (TUNEGATE_MODELS_DIR)")
    add_model.add_argument("--data", type=Path, help="data folder (TUNEGATE_DATA)")
    add_model.add_argument("--name",
                           help="the base model's id (default: the file stem or folder name)")
    add_model.add_argument("--link", action="store_true",
                           help="link to the .gguf PATH instead of copying it")
    add_client_commands(commands)
    return parser


def settings_from(args: argparse.Namespace) -> Settings:
    fine_tuning = getattr(args, "fine_tuning", None)
    worker = getattr(args, "worker", None)
    return Settings.from_env(
        data_dir=getattr(args, "data", None),
        database_url=getattr(args, "database_url", None),
        models_dir=getattr(args, "models_dir", None),
        keys_file=getattr(args, "keys_file", None),
        host=getattr(args, "host", None),
        port=getattr(args, "port", None),
        fine_tuning=None if fine_tuning is None else fine_tuning == "enabled",
        max_upload_bytes=getattr(args, "max_upload_bytes", None),
        embedded_worker=None if worker is None else worker == "embedded",
    )


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def open_bind_warning(settings: Settings, keys_configured: bool) -> str | None:
    """The warning ``serve`` prints when it would listen beyond this machine with no API key."""
    if keys_configured or _is_loopback(settings.host):
        return None
    return (f"tunegate listens on {settings.host} with no API keys: anyone who can reach it can "
            "read and train on every file. Configure keys (TUNEGATE_KEYS_FILE / "
            "TUNEGATE_API_KEY, `tunegate keys add`) or bind 127.0.0.1.")


def serve(settings: Settings) -> None:
    from tunegate.api.app import create_app
    from tunegate.api.keys import KeyRing
    from tunegate.api.server import uvicorn_options
    from tunegate.domain import serve_lock
    from tunegate.serving import socket_folders

    try:
        keys = KeyRing.from_settings(settings)
    except (OSError, ValueError) as exc:  # a missing or malformed keys file: say which and why
        raise SystemExit(f"tunegate serve: cannot read the API keys: {exc}") from None
    warning = open_bind_warning(settings, keys.enabled)
    if warning:
        log.warning(warning)
    lock = serve_lock.hold(settings.data_dir)  # before anything in the folder is touched
    # Here, in the process that makes them, never in a constructor other processes run too.
    left = socket_folders.sweep()
    if left:
        log.info("removed %d model-process socket folder(s) left by processes that are gone",
                 len(left))
    app = create_app(settings, keys=keys)  # migrates the store before any worker starts
    worker = EmbeddedWorker(settings) if settings.embedded_worker else None
    if worker is not None:
        worker.start()
    server = StopsWorkerFirst(uvicorn.Config(app, **uvicorn_options(settings)),
                              before_exit=worker.stop if worker is not None else lambda: None)
    try:
        server.run()
    finally:
        if worker is not None:
            worker.stop()  # a failed start, say: no worker outlives serve
        lock.release()


def work(settings: Settings) -> None:
    from tunegate.worker.host import DataFolderHost
    from tunegate.worker.loop import Worker

    requested: list[int] = []
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda received, _frame: requested.append(received))
    parent = os.environ.get("TUNEGATE_EMBEDDED_PARENT")
    if parent:
        # `serve` stops its worker before it exits; if `serve` is killed instead, the worker
        # dies with it, at once (no orphan keeps training or exporting on its own): its job
        # resumes from saved state when a worker starts again. Also when `serve` died before
        # this line ran (then the parent is already someone else).
        die_with_parent(signal.SIGKILL)
        if os.getppid() != int(parent):
            return
    Worker(DataFolderHost.open(settings)).run(lambda: bool(requested))


def add_key(settings: Settings, args: argparse.Namespace) -> None:
    from tunegate.api.keys import add_key as append_key

    if settings.keys_file is None:
        raise SystemExit("tunegate keys add: name the keys file (--keys-file or TUNEGATE_KEYS_FILE)")
    key = append_key(settings.keys_file, project=args.project,
                     organization=args.org or settings.organization_id, admin=args.admin,
                     name=args.name)
    # The only time the key exists outside its owner's hands: the file keeps its hash.
    print(key)
    print(f"(added to {settings.keys_file}; it is not stored and cannot be shown again)",
          file=sys.stderr)


def add_model(settings: Settings, args: argparse.Namespace) -> None:
    from tunegate.adapters.convert import convert_hf_folder
    from tunegate.domain import architectures, catalog

    def convert(folder: Path, output: Path) -> None:
        # The converter's own log (one line per tensor) shows a long conversion is alive.
        convert_hf_folder(folder, output, progress=lambda line: print(line, file=sys.stderr))

    try:
        model = catalog.add_base_model(settings.base_models_dir, args.path, name=args.name,
                                       link=args.link, convert=convert)
    except catalog.ModelNotAdded as exc:
        raise SystemExit(f"tunegate models add: {exc}") from None
    arch = architectures.architecture_of(model.path)
    done = "linked" if args.link else "copied" if args.path.is_file() else "converted"
    print(model.id)
    print(f"({arch.family}, {done} to {model.path}; a running server lists it at once)",
          file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    if args.command in CLIENT_COMMANDS:
        from tunegate.client.commands import run

        # No logging set up: the SDK's and httpx's INFO lines (each request, each retry) are
        # not for a user at a terminal.
        sys.exit(run(args))
    settings = settings_from(args)
    logs.configure(settings.log_format)
    from tunegate.domain.data_folder import ForeignDataFolder
    from tunegate.domain.serve_lock import DataFolderInUse

    try:
        if args.command == "keys":
            add_key(settings, args)
        elif args.command == "models":
            add_model(settings, args)
        elif args.command == "serve":
            serve(settings)
        else:
            work(settings)
    except (ForeignDataFolder, DataFolderInUse) as exc:
        raise SystemExit(f"tunegate {args.command}: {exc}") from None
