"""Where oms may send requests a user configured (webhook subscriptions, the HTTP SMS
provider): public internet addresses only, unless the local-development setting
(``webhook_allow_private_targets``) is on. No database here.

Two checks, one policy:

* When a target is saved (``check_url``): the URL has no credentials (``user:pass@``), and
  a host that is an address literal, in any spelling (``2130706433``, ``0x7f000001``, ``127.1``,
  ``[::ffff:169.254.169.254]``...), or ``localhost``, is not internal. Names are not resolved
  here: what a name resolves to can change at any time.
* At every delivery (``TargetGuard.pin``): the host is resolved, **every** address of the answer
  is checked, and the request goes to the checked address (the URL's host is replaced by it; the
  ``Host`` header and TLS server name stay the name), so a second, different answer (DNS
  rebinding) never gets a connection. A refused delivery connects to nothing.

Internal means loopback, private networks, link-local, unspecified, multicast, and anything
else that is not a global unicast address (shared CGNAT space, reserved ranges); IPv4 addresses
embedded in IPv6 (mapped ``::ffff:a.b.c.d``, NAT64 ``64:ff9b::/96``, 6to4 ``2002::/16``) are
judged as the IPv4 address. Cloud metadata endpoints are refused even with the setting on.
"""

from __future__ import annotations

import asyncio
import re
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address

import httpx

IPAddress = IPv4Address | IPv6Address
Resolver = Callable[[str, int], Awaitable[list[str]]]
"""``(host, port) -> addresses``: the relay's DNS seam (tests inject answers)."""

SETTING = "OMS_WEBHOOK_ALLOW_PRIVATE_TARGETS"

METADATA_ADDRESSES = frozenset(
    ip_address(a)
    for a in (
        "169.254.169.254",  # AWS, GCP, Azure, OpenStack, DigitalOcean...
        "169.254.170.2",  # AWS ECS task metadata
        "100.100.100.200",  # Alibaba Cloud
        "fd00:ec2::254",  # AWS IMDS over IPv6
    )
)
METADATA_NAMES = frozenset({"metadata.google.internal", "metadata.goog"})

REASONS = {
    "metadata": "a cloud metadata address",
    "loopback": "a loopback address",
    "link_local": "a link-local address",
    "unspecified": "the unspecified address",
    "multicast": "a multicast address",
    "private": "a private-network address",
    "not_global": "not a public internet address",
}
"""Why an address is refused (the ``reason`` of the 422 problem), and how it reads."""

_NAT64 = IPv6Network("64:ff9b::/96")
_THIS_NETWORK = IPv4Network("0.0.0.0/8")


class TargetRefused(Exception):
    """The URL may not receive requests; ``reason`` is a key of REASONS, ``credentials``,
    ``scheme`` or ``invalid_host``."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


class TargetUnresolved(Exception):
    """The host name did not resolve (a failed attempt, retried like a refused connection)."""


def _embedded_v4(ip: IPv6Address) -> IPv4Address | None:
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip in _NAT64:
        return IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip.sixtofour


def classify(ip: IPAddress) -> str | None:
    """Why ``ip`` is internal (a key of REASONS), or None for a public address."""
    if isinstance(ip, IPv6Address):
        if ip.scope_id:
            ip = IPv6Address(str(ip).split("%", 1)[0])
        inner = _embedded_v4(ip)
        if inner is not None:
            return classify(inner)
    if ip in METADATA_ADDRESSES:
        return "metadata"
    checks = (
        ("loopback", ip.is_loopback),
        ("link_local", ip.is_link_local),
        ("unspecified", ip.is_unspecified or (isinstance(ip, IPv4Address) and ip in _THIS_NETWORK)),
        ("multicast", ip.is_multicast),
        ("private", ip.is_private),
        ("not_global", ip.is_reserved or not ip.is_global),
    )
    return next((reason for reason, hit in checks if hit), None)


_DIGITS = re.compile(r"[0-9]+")
_HEX = re.compile(r"0[xX][0-9a-fA-F]*")
_V4_PART = re.compile(r"0[xX][0-9a-fA-F]*|0[0-7]*|[1-9][0-9]*")


def _ends_in_number(parts: list[str]) -> bool:
    last = parts[-1]
    return bool(_DIGITS.fullmatch(last) or _HEX.fullmatch(last))


def literal_address(host: str) -> IPAddress | None:
    """The address a URL host spells, the way browsers and ``inet_aton`` read it (WHATWG URL
    IPv4 parsing: 1 to 4 parts, each decimal, ``0x`` hex or ``0`` octal, the last one filling
    the remaining bytes); None for a name. Raises TargetRefused for a malformed number."""
    host = host.strip("[]")
    if ":" in host:
        try:
            return ip_address(host.split("%", 1)[0])
        except ValueError:
            raise TargetRefused("invalid_host", f"{host!r} is not a valid IPv6 address") from None
    parts = host.split(".")
    if len(parts) > 1 and parts[-1] == "":
        parts.pop()
    if not parts or not _ends_in_number(parts):
        return None
    invalid = TargetRefused("invalid_host", f"{host!r} is neither a host name nor an IPv4 address")
    if len(parts) > 4 or not all(_V4_PART.fullmatch(p) for p in parts):
        raise invalid
    numbers = []
    for part in parts:
        if part[:2].lower() == "0x":
            numbers.append(int(part[2:] or "0", 16))
        elif len(part) > 1 and part[0] == "0":
            numbers.append(int(part[1:], 8))
        else:
            numbers.append(int(part))
    *head, last = numbers
    if any(n > 255 for n in head) or last >= 256 ** (4 - len(head)):
        raise invalid
    value = last
    for i, n in enumerate(head):
        value += n << (8 * (3 - i))
    return IPv4Address(value)


def _refused(reason: str, what: str) -> TargetRefused:
    """``what`` is e.g. "10.0.0.1 is " or "hooks.example.com resolves to 10.0.0.1, "."""
    if reason == "metadata":
        return TargetRefused(reason, f"{what}{REASONS[reason]}; nothing is ever sent there")
    return TargetRefused(reason, f"{what}{REASONS[reason]} ({SETTING} is off)")


def _allowed(reason: str | None, *, allow_private: bool) -> bool:
    return reason is None or (allow_private and reason != "metadata")


def _name_reason(name: str) -> str | None:
    """Names that always mean an internal address: localhost (RFC 6761), metadata services."""
    name = name.rstrip(".").lower()
    if name in METADATA_NAMES:
        return "metadata"
    if name == "localhost" or name.endswith(".localhost"):
        return "loopback"
    return None


def _parse(url: str) -> tuple[httpx.URL, str]:
    """The URL and its host as sent (ASCII: IDNA-encoded, no IPv6 brackets)."""
    try:
        parsed = httpx.URL(url)
        host = parsed.raw_host.decode("ascii")
    except (httpx.InvalidURL, UnicodeError) as exc:
        raise TargetRefused("invalid_host", f"not a valid URL: {exc}") from None
    if parsed.scheme not in ("http", "https"):
        raise TargetRefused("scheme", "only http and https URLs are allowed")
    if not host:
        raise TargetRefused("invalid_host", "the URL has no host")
    return parsed, host


def check_url(url: str, *, allow_private: bool) -> None:
    """Refuse, when a target is saved, a URL that may never receive requests: one with
    credentials, or whose host is (spells) an internal address. Raises TargetRefused."""
    parsed, host = _parse(url)
    if parsed.userinfo:
        raise TargetRefused(
            "credentials",
            "the URL contains credentials (user:password@); oms shows these URLs to every "
            "admin and in its logs: put a token in the path or query (or a header) instead",
        )
    reason = _name_reason(host)
    if not _allowed(reason, allow_private=allow_private):
        raise _refused(str(reason), f"{host} is ")
    ip = literal_address(host)
    if ip is not None:
        reason = classify(ip)
        if not _allowed(reason, allow_private=allow_private):
            raise _refused(str(reason), f"{ip} is ")


def redact(url: str) -> str:
    """The URL without its credentials (``https://***@host/...``), for display and logs."""
    if "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    cut = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    authority, tail = rest[:cut], rest[cut:]
    if "@" not in authority:
        return url
    return f"{scheme}://***@{authority.rsplit('@', 1)[-1]}{tail}"


async def system_resolver(host: str, port: int) -> list[str]:
    """The operating system's resolver (``getaddrinfo``), every address of the answer."""
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise TargetUnresolved(f"cannot resolve {host}: {exc}") from None
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


@dataclass(frozen=True, slots=True)
class Pinned:
    """A request's destination fixed to one checked address."""

    url: httpx.URL
    headers: dict[str, str] = field(default_factory=dict)
    extensions: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class TargetGuard:
    """The delivery-time check: resolve, check every address, send to the checked one."""

    allow_private: bool
    resolver: Resolver = system_resolver

    async def pin(self, url: str) -> Pinned:
        """Where to connect for ``url``; raises TargetRefused or TargetUnresolved."""
        parsed, host = _parse(url)
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
        reason = _name_reason(host)
        if not _allowed(reason, allow_private=self.allow_private):
            raise _refused(str(reason), f"{host} is ")
        literal = literal_address(host)
        if literal is not None:
            addresses: list[IPAddress] = [literal]
        else:
            answer = await self.resolver(host, port)
            try:
                addresses = [ip_address(a.split("%", 1)[0]) for a in answer]
            except ValueError as exc:
                raise TargetUnresolved(f"cannot resolve {host}: {exc}") from None
            if not addresses:
                raise TargetUnresolved(f"cannot resolve {host}: no address")
        for ip in addresses:
            reason = classify(ip)
            if not _allowed(reason, allow_private=self.allow_private):
                what = f"{ip} is " if literal is not None else f"{host} resolves to {ip}, "
                raise _refused(str(reason), what)
        chosen = addresses[0]
        pinned = parsed.copy_with(host=str(chosen))
        if literal is not None and str(chosen) == host.strip("[]"):
            return Pinned(url=pinned)
        extensions = {"sni_hostname": host} if parsed.scheme == "https" and literal is None else {}
        return Pinned(
            url=pinned, headers={"host": parsed.netloc.decode("ascii")}, extensions=extensions
        )
