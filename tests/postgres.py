"""A throwaway PostgreSQL server for the tests (and ``bench/queue_claims.py``).

``initdb`` in a temporary folder, a free port on 127.0.0.1, the unix socket in that folder,
``fsync`` off (nothing here has to survive a power cut), trust authentication (only this
machine's processes can reach 127.0.0.1). The server programs come from ``PATH`` or Debian's
``/usr/lib/postgresql/<version>/bin`` (``make system-packages`` installs them).

PostgreSQL refuses to run as root (CI and containers run tests as root): then ``initdb`` and
``pg_ctl`` run as the ``postgres`` user the Debian package creates (``nobody`` without it),
through ``subprocess``'s own ``user=``/``group=`` (no ``runuser``/``sudo`` needed), and the
folder is given to that user. As any other user they run as that user.

Each test gets its own database (``CREATE DATABASE`` takes milliseconds): tests never see each
other's rows, and nothing has to be emptied.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SUPERUSER = "postgres"
HOW_TO_GET_IT = ("PostgreSQL's server programs (initdb, pg_ctl) are not installed: "
                 "`make system-packages` installs them (Debian's postgresql package), or set "
                 "TUNEGATE_TEST_POSTGRES_URL to a server whose user may create databases")
HOW_TO_GET_THE_DRIVER = "psycopg is not installed: `make setup` installs it (the dev extra)"
START_ATTEMPTS = 3  # a free port can be taken by someone else before the server binds it


def server_programs() -> Path | None:
    """The folder holding ``initdb`` and ``pg_ctl``, the newest Debian version first."""
    on_path = shutil.which("initdb")
    candidates = [os.path.dirname(os.path.realpath(on_path))] if on_path else []
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"),
                         key=lambda folder: int(Path(folder).parent.name)
                         if Path(folder).parent.name.isdigit() else 0, reverse=True)
    for folder in candidates:
        if all(os.access(os.path.join(folder, name), os.X_OK) for name in ("initdb", "pg_ctl")):
            return Path(folder)
    return None


def driver_missing() -> bool:
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return True
    return False


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _unprivileged_account() -> pwd.struct_passwd | None:
    """Whom to run the server as: ``None`` (ourselves) unless we are root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    raise RuntimeError("running as root, and neither a postgres nor a nobody user exists to "
                       "run PostgreSQL as (it refuses root)")


@dataclass
class ThrowawayPostgres:
    """One running server; ``stop()`` ends it and removes its folder."""

    programs: Path
    folder: Path
    port: int
    account: pwd.struct_passwd | None

    @classmethod
    def start(cls, programs: Path) -> ThrowawayPostgres:
        account = _unprivileged_account()
        folder = Path(tempfile.mkdtemp(prefix="tunegate-postgres-"))
        if account is not None:
            os.chown(folder, account.pw_uid, account.pw_gid)
        server = cls(programs, folder, 0, account)
        try:
            server._run("initdb", "--pgdata", str(server.data), "--username", SUPERUSER,
                        "--auth", "trust", "--encoding", "UTF8", "--locale", "C", "--no-sync")
            for attempt in range(START_ATTEMPTS):
                server.port = _free_port()
                try:
                    server._run("pg_ctl", "start", "--wait", "--pgdata", str(server.data),
                                "--log", str(server.log_path), "-o", server._options())
                    return server
                except RuntimeError:
                    if attempt == START_ATTEMPTS - 1:
                        raise
        except BaseException:
            server.remove()
            raise
        raise AssertionError("unreachable")

    @property
    def data(self) -> Path:
        return self.folder / "data"

    @property
    def log_path(self) -> Path:
        return self.folder / "server.log"

    def _options(self) -> str:
        # fsync and friends off: a throwaway server trades durability for speed. Enough
        # connections for bench/queue_claims.py's 16 workers plus the tests' own.
        return (f"-h 127.0.0.1 -p {self.port} -k {self.folder} -F "
                "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200")

    def _run(self, program: str, *args: str) -> None:
        extra: dict[str, Any] = {}
        if self.account is not None:
            extra = {"user": self.account.pw_uid, "group": self.account.pw_gid,
                     "extra_groups": []}
        done = subprocess.run([str(self.programs / program), *args], cwd=self.folder,
                              capture_output=True, text=True, timeout=120, check=False,
                              env={"PATH": os.environ.get("PATH", ""), "LC_ALL": "C"}, **extra)
        if done.returncode != 0:
            log = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
            raise RuntimeError(f"{program} failed ({done.returncode}):\n{done.stdout}"
                               f"{done.stderr}\n{log[-3000:]}")

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def stop(self) -> None:
        try:
            # immediate: nothing of it is kept, so there is nothing to write out first.
            self._run("pg_ctl", "stop", "--wait", "--mode", "immediate", "--pgdata",
                      str(self.data))
        finally:
            self.remove()

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def create_database(server_url: str, template: str | None = None) -> str:
    """A new database on the server of ``server_url``: empty, or a copy of the database the
    URL ``template`` names (no one may be connected to it); the URL naming it."""
    from sqlalchemy.engine import make_url

    name = f"tunegate_test_{uuid.uuid4().hex[:12]}"
    copied = f' TEMPLATE "{make_url(template).database}"' if template else ""
    _maintenance(server_url, f'CREATE DATABASE "{name}"{copied}')
    return make_url(server_url).set(database=name).render_as_string(hide_password=False)


def drop_database(database_url: str) -> None:
    """Drop the database of ``database_url`` (its connections closed first)."""
    from sqlalchemy.engine import make_url

    name = make_url(database_url).database
    _maintenance(database_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _maintenance(url: str, statement: str) -> None:
    """Run ``statement`` outside a transaction, connected to the server's ``postgres``
    database (CREATE/DROP DATABASE cannot run inside one, nor in the database they name)."""
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url

    engine = create_engine(make_url(url).set(database="postgres"),
                           isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            connection.exec_driver_sql(statement)
    finally:
        engine.dispose()
