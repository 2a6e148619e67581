"""Object identifiers shaped like OpenAI's (``ftjob-…``, ``file-…``) that sort by creation time.

Every id is ``<prefix><9 chars of milliseconds><15 random chars>`` in base62 with the ASCII-ordered
alphabet, so ordering rows by id is ordering them by creation. That lets list cursors (``after``)
stay meaningful even when the object they name was deleted in the meantime.
"""

from __future__ import annotations

import secrets
import threading
import time

ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
TIME_CHARS = 9  # 62**9 ms is ~400,000 years: fixed width keeps lexical order == numeric order
RANDOM_CHARS = 15
_RANDOM_SPACE = len(ALPHABET) ** RANDOM_CHARS

JOB = "ftjob-"
EVENT = "ftevent-"
CHECKPOINT = "ftckpt_"
FILE = "file-"
UPLOAD = "upload_"
UPLOAD_PART = "part_"
PERMISSION = "cp_"
REQUEST = "req_"
# The Evals API (OpenAI's prefixes).
EVAL = "eval_"
EVAL_RUN = "evalrun_"
OUTPUT_ITEM = "outputitem_"
# Webhooks: an event (the payload's id), one message of it to one endpoint (the webhook-id
# header, the same on every retry; OpenAI's examples show these two prefixes), an endpoint.
WEBHOOK_EVENT = "evt_"
WEBHOOK_MESSAGE = "wh_"
WEBHOOK_ENDPOINT = "we_"

_lock = threading.Lock()
_last_ms = 0


def _base62(number: int, width: int) -> str:
    chars = []
    for _ in range(width):
        number, digit = divmod(number, 62)
        chars.append(ALPHABET[digit])
    return "".join(reversed(chars))


def _monotonic_ms() -> int:
    """Wall-clock milliseconds, strictly increasing within this process."""
    global _last_ms
    with _lock:
        _last_ms = max(int(time.time() * 1000), _last_ms + 1)
        return _last_ms


def new_id(prefix: str) -> str:
    """A fresh id with ``prefix`` that sorts after every id this process made before."""
    # One draw for all 15 characters: as uniform as 15 draws, one urandom read instead of 15
    # (every request gets an id, its x-request-id).
    random_part = _base62(secrets.randbelow(_RANDOM_SPACE), RANDOM_CHARS)
    return f"{prefix}{_base62(_monotonic_ms(), TIME_CHARS)}{random_part}"


def millis_of(object_id: str, prefix: str) -> int:
    """The creation time (unix milliseconds) written in an id made by :func:`new_id`."""
    digits = object_id[len(prefix):len(prefix) + TIME_CHARS]
    number = 0
    for char in digits:
        number = number * 62 + ALPHABET.index(char)
    return number


def floor_id(prefix: str, millis: int) -> str:
    """An id that sorts before every id with ``prefix`` made at ``millis`` or later, and after
    every one made before: a cursor for "everything since then"."""
    return f"{prefix}{_base62(max(0, millis), TIME_CHARS)}"


def short_id(length: int = 8) -> str:
    """A random alphanumeric tag, as in the last segment of ``ft:…:abc12345`` model names."""
    return "".join(secrets.choice(ALPHABET) for _ in range(length))

# Job metadata keys ``tunegate migrate`` writes and the server reads (tunegate.domain.former_names):
# the fine-tuned model's name at the provider the job came from, and that job's id there.
FORMER_MODEL_KEY = "tunegate_former_model"
SOURCE_JOB_KEY = "tunegate_source_job"
