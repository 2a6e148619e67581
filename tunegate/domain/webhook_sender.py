"""Sending one webhook message: where it may go, and one HTTP attempt at it.

A webhook URL is the client's, but the request leaves from the server's network: left alone it
could reach a cloud's metadata service (credentials) or services that trust the server's
address. So only ``http(s)`` URLs are taken, every address the host resolves to is checked when
the endpoint is added and again before each attempt, and addresses outside the public internet
(link-local and metadata, loopback, private, carrier-grade NAT, multicast, reserved) are
refused unless the operator names their network in ``TUNEGATE_WEBHOOK_ALLOW_NETWORKS`` (a LAN
receiver, or 127.0.0.1 for a local one). Redirects are not followed (a 3xx is a failure) and at
most ``RESPONSE_BYTES`` of an answer are read.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx

from tunegate.domain.webhooks import sign
from tunegate.errors import InvalidRequest, clip

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

RESPONSE_BYTES = 4096  # what of a receiver's answer is read (kept as the attempt's error text)
USER_AGENT = "tunegate-webhooks/1.0 (OpenAI/1.0 compatible)"
# Named even though is_private/is_link_local cover most: a metadata address is the one that
# leaks credentials, so its refusal is spelled out (AWS's IPv6 one is inside fd00::/8).
METADATA = (ipaddress.ip_network("169.254.169.254/32"), ipaddress.ip_network("fd00:ec2::254/128"),
            ipaddress.ip_network("100.100.100.200/32"))


class RefusedAddress(Exception):
    """The URL's host is, or resolves to, an address webhooks may not reach."""


def parse_networks(value: str) -> tuple[IPNetwork, ...]:
    """``TUNEGATE_WEBHOOK_ALLOW_NETWORKS``: a comma list of CIDRs (a bare address is /32)."""
    return tuple(ipaddress.ip_network(part.strip(), strict=False)
                 for part in value.split(",") if part.strip())


def is_public(address: IPAddress) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return is_public(address.ipv4_mapped)
    return address.is_global and not (address.is_multicast or address.is_reserved
                                      or any(address in network for network in METADATA))


def check_address(address: IPAddress, allowed: Sequence[IPNetwork]) -> None:
    if any(address.version == network.version and address in network for network in allowed):
        return
    if not is_public(address):
        kind = ("a cloud metadata address" if any(address in n for n in METADATA)
                else "a link-local address" if address.is_link_local
                else "a loopback address" if address.is_loopback
                else "a private or reserved address")
        raise RefusedAddress(
            f"{address} is {kind}: webhooks go only to public addresses unless the operator "
            f"allows its network (setting TUNEGATE_WEBHOOK_ALLOW_NETWORKS, e.g. {address}/32)")


def resolve(host: str, port: int) -> list[IPAddress]:
    """Every address ``host`` resolves to (a literal address is itself)."""
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise RefusedAddress(f"{host} does not resolve: {exc}") from None
    return [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]


@dataclass(frozen=True)
class Target:
    url: str
    host: str
    port: int


def parse_url(url: str) -> Target:
    """``url`` if it is an absolute ``http(s)`` URL with a host and no credentials;
    ``InvalidRequest`` naming ``url`` otherwise."""
    problem = None
    try:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise InvalidRequest(f"The URL {clip(url)!r} is malformed: {exc}.", param="url",
                             code="invalid_url") from None
    if parts.scheme not in ("http", "https"):
        problem = "is not an http or https URL"
    elif not parts.hostname:
        problem = "names no host"
    elif parts.username or parts.password:
        problem = "holds credentials (put them in the path or a query if you must)"
    elif any(char.isspace() for char in url):
        problem = "holds white space"
    if problem:
        raise InvalidRequest(f"The URL {clip(url)!r} {problem}.", param="url", code="invalid_url")
    return Target(url, parts.hostname or "", port)


def check_url(url: str, allowed: Sequence[IPNetwork]) -> None:
    """Refuse (``InvalidRequest`` naming ``url``) a malformed URL or one whose host resolves to
    an address webhooks may not reach."""
    target = parse_url(url)
    try:
        for address in resolve(target.host, target.port):
            check_address(address, allowed)
    except RefusedAddress as exc:
        raise InvalidRequest(f"Webhooks to {clip(url)} are refused: {exc}.", param="url",
                             code="webhook_url_refused") from None


@dataclass(frozen=True)
class Attempt:
    status_code: int | None  # None: no answer (refused, timed out, address not allowed)
    error: str | None  # what went wrong; None for a 2xx

    @property
    def delivered(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def send(url: str, secret: str, message_id: str, body: str, *, timeout: float,
         allowed: Sequence[IPNetwork], old_secret: str | None = None) -> Attempt:
    """POST ``body`` signed for ``message_id`` now (by ``old_secret`` too, when given); a 2xx
    within ``timeout`` is delivered."""
    try:
        check_url(url, allowed)
    except InvalidRequest as exc:
        return Attempt(None, exc.message)
    data = body.encode()
    headers = {"content-type": "application/json", "user-agent": USER_AGENT,
               **sign(secret, message_id, int(time.time()), data, old_secret=old_secret)}
    deadline = time.monotonic() + timeout
    try:
        with httpx.Client(timeout=timeout, follow_redirects=False, trust_env=False) as client, \
                client.stream("POST", url, content=data, headers=headers) as response:
            answer = _read_some(response, deadline)
    except httpx.HTTPError as exc:
        return Attempt(None, f"{type(exc).__name__}: {exc}"[:500] or type(exc).__name__)
    if time.monotonic() > deadline:  # httpx's timeout is per read: a trickle could outlast it
        return Attempt(None, f"no complete answer within {timeout:g} s")
    if 200 <= response.status_code < 300:
        return Attempt(response.status_code, None)
    return Attempt(response.status_code, f"HTTP {response.status_code}: {answer[:500]}")


def _read_some(response: httpx.Response, deadline: float) -> str:
    """At most ``RESPONSE_BYTES`` of the answer, until ``deadline``: a receiver cannot make us
    read a lot, or for long."""
    kept = b""
    for chunk in response.iter_raw():
        kept += chunk
        if len(kept) >= RESPONSE_BYTES or time.monotonic() > deadline:
            break
    return kept[:RESPONSE_BYTES].decode("utf-8", "replace")
