"""Memory of a large upload: peak RSS of a real `tunegate serve` while it takes a 200 MB file.

    .venv/bin/python bench/upload_rss.py [--megabytes 200] [--purpose fine-tune] [--in-parts]

``--in-parts`` sends it through the Uploads API instead (64 MiB parts, then complete).

Prints the server's RSS before the upload and its peak (VmHWM) after, plus the upload time.
Uploads stream to disk, so the peak should stay within a few tens of MB of the baseline.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import tempfile
import time
from pathlib import Path

import httpx
from serving import running_server


def _proc_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def _make_jsonl(path: Path, megabytes: int) -> None:
    row = json.dumps({"messages": [{"role": "user", "content": "x" * 400},
                                   {"role": "assistant", "content": "y" * 400}]}) + "\n"
    with path.open("w") as out:
        for _ in range(megabytes * 1024 * 1024 // len(row) + 1):
            out.write(row)


def _upload_in_parts(base: str, payload: Path, purpose: str) -> dict:
    """Create, send 64 MiB parts, complete (with the md5); the new file."""
    size = payload.stat().st_size
    created = httpx.post(f"{base}/uploads", json={"filename": payload.name, "purpose": purpose,
                                                  "bytes": size, "mime_type": "text/jsonl"})
    created.raise_for_status()
    upload_id = created.json()["id"]
    part_ids, md5 = [], hashlib.md5(usedforsecurity=False)
    with payload.open("rb") as source:
        while chunk := source.read(64 * 1024 * 1024):
            md5.update(chunk)
            part = httpx.post(f"{base}/uploads/{upload_id}/parts",
                              files={"data": ("part", chunk)}, timeout=600)
            part.raise_for_status()
            part_ids.append(part.json()["id"])
            del chunk
    done = httpx.post(f"{base}/uploads/{upload_id}/complete", timeout=600,
                      json={"part_ids": part_ids, "md5": md5.hexdigest()})
    done.raise_for_status()
    return dict(done.json()["file"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megabytes", type=int, default=200)
    parser.add_argument("--purpose", default="fine-tune")
    parser.add_argument("--in-parts", action="store_true",
                        help="through the Uploads API, in 64 MiB parts")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        payload = folder / "big.jsonl"
        _make_jsonl(payload, args.megabytes)
        port = 8765
        with running_server(folder, "--worker", "external", port=port) as server:
            base = f"http://127.0.0.1:{port}/v1"
            baseline_kb = _proc_kb(server.process.pid, "VmRSS")
            started = time.perf_counter()
            if args.in_parts:
                stored = _upload_in_parts(base, payload, args.purpose)
            else:
                with payload.open("rb") as body:
                    response = httpx.post(f"{base}/files", data={"purpose": args.purpose},
                                          files={"file": ("big.jsonl", body)}, timeout=600)
                response.raise_for_status()
                stored = response.json()
            elapsed = time.perf_counter() - started
            peak_kb = _proc_kb(server.process.pid, "VmHWM")
    size_mb = stored["bytes"] / 1e6
    how = "in 64 MiB parts" if args.in_parts else "in one request"
    print(f"upload {how}: {size_mb:.1f} MB (purpose {args.purpose}) in {elapsed:.1f} s "
          f"({size_mb / elapsed:.0f} MB/s)")
    print(f"server RSS before: {baseline_kb / 1024:.0f} MiB; peak during upload: "
          f"{peak_kb / 1024:.0f} MiB; growth: {(peak_kb - baseline_kb) / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
