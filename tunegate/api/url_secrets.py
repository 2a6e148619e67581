"""API keys sent in the URL: refused, and never written to a log in clear.

Some clients put the key in the query (``?api_key=``, ``?key=``, ``?access_token=``). tunegate
reads keys only from ``Authorization: Bearer``, so such a request is refused (400, saying where
the key goes), but its request line still reaches uvicorn's access log, and from there every
log collector. ``RedactSecrets`` rewrites what a log line quotes of a URL: the value of every
parameter with a key-like name, and any text shaped like a key (``sk-…``) wherever it stands.
"""

from __future__ import annotations

import logging
import re
from urllib.parse import unquote_plus

REDACTED = "[redacted]"
# Parameter names that carry credentials, compared lowercased with everything but letters and
# digits removed ("X-Api-Key" -> "xapikey"): names ending in key, token, secret, password,
# auth(orization), bearer, credential(s) or sig(nature), as api_key, access_token, client_secret.
_KEY_LIKE = re.compile(r"(?:key|token|secret|password|passwd|pwd|auth|authorization|bearer"
                       r"|credential|sig|signature)s?\Z")
# OpenAI's keys and tunegate's (sk-tg-…): redacted even as the value of an innocent parameter.
_KEY_SHAPED = re.compile(r"sk-[A-Za-z0-9_\-]{8,}")
_NAME_CHARS = re.compile(r"[^a-z0-9]")


def key_like(name: str) -> bool:
    """Whether a query parameter's name says it carries a credential (``metadata[token]`` is a
    metadata filter: only the part before ``[`` counts)."""
    base = unquote_plus(name).split("[", 1)[0]
    return _KEY_LIKE.search(_NAME_CHARS.sub("", base.lower())) is not None


def key_parameters(query_string: bytes | str) -> list[str]:
    """The names of the query's key-like parameters, in order, each once."""
    query = query_string.decode("latin-1") if isinstance(query_string, bytes) else query_string
    names = [unquote_plus(item.split("=", 1)[0]) for item in query.split("&") if item]
    return list(dict.fromkeys(name for name in names if key_like(name)))


def redacted(target: str) -> str:
    """``target`` (a path with its query, or any text quoting one) with key-like parameters'
    values and key-shaped text replaced by ``[redacted]``."""
    path, mark, query = target.partition("?")
    if mark:
        items = []
        for item in query.split("&"):
            name, equals, _ = item.partition("=")
            items.append(f"{name}={REDACTED}" if equals and key_like(name) else item)
        target = path + mark + "&".join(items)
    return _KEY_SHAPED.sub(REDACTED, target)


class RedactSecrets(logging.Filter):
    """A logging filter that redacts the URLs (and keys) a record quotes; it drops nothing."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(redacted(arg) if isinstance(arg, str) else arg
                                for arg in record.args)
        if isinstance(record.msg, str):
            record.msg = redacted(record.msg)
        return True
