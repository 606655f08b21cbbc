"""Before any load: does something answer at the target's address? An unreachable target
is an infrastructure failure (retried per policy), not a test verdict of 100 % errors."""

from __future__ import annotations

import socket
from urllib.parse import urlsplit

from nightly_pipeline.suite.errors import InfrastructureError
from nightly_pipeline.suite.target import Target

CONNECT_TIMEOUT_S = 5.0


class TargetUnreachableError(InfrastructureError, ConnectionError):
    """Nothing accepted a TCP connection at the target's base URL."""


def ensure_reachable(target: Target, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
    """Raise ``TargetUnreachableError`` (naming the fix) unless the base URL accepts a
    TCP connection within ``timeout_s``."""
    parts = urlsplit(target.base_url)
    host = parts.hostname or "127.0.0.1"
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return
    except OSError as exc:
        raise TargetUnreachableError(
            f"target {target.name!r}: nothing answers at {target.base_url} ({exc}); "
            "start the platform, or fix base_url in the target file"
        ) from exc
