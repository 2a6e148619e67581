"""What ``tunegate migrate`` has already moved, kept in a small JSON file on the machine that runs
it, so that a second run (after a kill -9, a network error or a question answered no) does not
download or upload anything again.

The file is a shortcut, not the truth: the truth is on the target server (a copied file has the
same name and bytes; a recreated job carries its source job's id in its metadata), and a run
whose file is lost finds its objects there again. It lives with the client and not in the
server's data folder because the command may run on another machine than the server. It never
holds a key: only ids, names and hashes. Each change is written to a temporary file, flushed
to disk and renamed over the old one, so a kill at any moment leaves the old or the new file.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

VERSION = 1


def default_path(source_url: str, target_url: str, environ: os._Environ[str] | dict[str, str]
                 = os.environ) -> Path:
    """``$XDG_STATE_HOME/tunegate/migrate/<hash of both URLs>.json`` (``~/.local/state`` when
    unset): one file per source and target pair."""
    home = environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    pair = hashlib.sha256(f"{source_url}\n{target_url}".encode()).hexdigest()[:16]
    return Path(home) / "tunegate" / "migrate" / f"{pair}.json"


@dataclass
class MigrationState:
    """``files``: source file id -> {target, filename, sha256}; ``jobs``: source job id ->
    {target, former_model}; ``records``: former model -> {eval, file}."""

    path: Path
    source: str
    target: str
    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    jobs: dict[str, dict[str, Any]] = field(default_factory=dict)
    records: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path, source: str, target: str) -> MigrationState:
        """The state at ``path``, or an empty one (no file yet, or one of another pair)."""
        try:
            saved = json.loads(path.read_text())
        except FileNotFoundError:
            return cls(path, source, target)
        except (OSError, ValueError) as exc:
            raise ValueError(f"cannot read the migration state {path}: {exc}; remove it to "
                             "start over (the target's objects are found again)") from None
        if saved.get("source") != source or saved.get("target") != target:
            return cls(path, source, target)
        return cls(path, source, target, files=saved.get("files", {}),
                   jobs=saved.get("jobs", {}), records=saved.get("records", {}))

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        body = {"version": VERSION, "source": self.source, "target": self.target,
                "files": self.files, "jobs": self.jobs, "records": self.records}
        with temporary.open("w") as out:
            json.dump(body, out, indent=1, sort_keys=True)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, self.path)
