"""Loopback-only targets (DESIGN.md §8).

Every client checks its target before opening a socket: the host must resolve to
loopback addresses only, or be named in the target config's ``allow_hosts``.
``resolve_target`` also returns the verified addresses so clients connect to exactly
what was checked (a later DNS answer cannot redirect the load elsewhere).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Collection
from urllib.parse import urlsplit

from nightly_pipeline.loadgen.errors import ConfigError, TargetNotAllowedError

__all__ = ["check_target", "host_of", "is_loopback", "resolve_target"]


def host_of(url_or_host: str) -> str:
    """The normalized host of a URL (``http://h:1/x``), ``host:port``, ``[v6]:port`` or host."""
    text = url_or_host.strip()
    if "://" in text:
        try:
            host = urlsplit(text).hostname
        except ValueError as exc:
            raise ConfigError(f"invalid URL {url_or_host!r}: {exc}") from exc
    elif text.startswith("["):
        end = text.find("]")
        host = text[1:end] if end > 0 else None
    elif text.count(":") == 1:
        host = text.split(":", 1)[0]
    else:
        host = text  # a bare name, IPv4 or unbracketed IPv6 address
    if not host:
        raise ConfigError(f"no host in {url_or_host!r}")
    return host.lower().rstrip(".")


def is_loopback(address: str) -> bool:
    """True for 127.0.0.0/8, ::1 and IPv4-mapped loopback (::ffff:127.x.y.z)."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # drop an IPv6 zone id
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


def resolve_target(url_or_host: str, allow_hosts: Collection[str] = ()) -> tuple[str, ...]:
    """Check the target and return its verified loopback addresses.

    Returns ``()`` when the host is explicitly in ``allow_hosts`` (it is then not
    resolved here; the caller connects by name). Raises ``TargetNotAllowedError``
    unless every resolved address is loopback.
    """
    host = host_of(url_or_host)
    if host in {host_of(h) for h in allow_hosts}:
        return ()
    try:
        addresses: tuple[str, ...] = (str(ipaddress.ip_address(host)),)
    except ValueError:
        try:
            infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError) as exc:
            raise TargetNotAllowedError(host, (), f"it could not be resolved ({exc})") from exc
        addresses = tuple(dict.fromkeys(str(info[4][0]) for info in infos))
    if not addresses or not all(is_loopback(a) for a in addresses):
        raise TargetNotAllowedError(host, addresses)
    return addresses


def check_target(url_or_host: str, allow_hosts: Collection[str] = ()) -> None:
    """Raise ``TargetNotAllowedError`` unless the target is loopback or allowed by name."""
    resolve_target(url_or_host, allow_hosts)
