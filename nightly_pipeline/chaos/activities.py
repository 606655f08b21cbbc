"""The suite's faults and probes as Chaos Toolkit Python activities (``"provider":
{"type": "python", "module": "nightly_pipeline.chaos.activities", "func": ...}``), so a
user's own experiments can call them too.

Actions act on the running chaos test named by ``configuration["nightly_session"]``
(the suite puts it in the experiment it runs). Probes only need addresses from the
configuration (``base_url``, ``metrics_url``, ``redis_url``): they work against any
platform that keeps DESIGN §4's contract.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import httpx
import redis

from nightly_pipeline.chaos.session import gone_in, session_of
from nightly_pipeline.suite.sampling import parse_metrics

PROBE_TIMEOUT_S = 5.0

# -- actions ---------------------------------------------------------------------------


def inject_fault(
    fault: str,
    fault_type: str,
    params: Mapping[str, Any] | None = None,
    configuration: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Inject platform fault ``fault_type`` (kill, terminate, pause, restart, link_down,
    link_toxic, pg_lock, noop) under the name ``fault``; its window, as JSON."""
    return session_of(configuration).inject(fault, fault_type, params or {})


def revert_fault(fault: str, configuration: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Revert the fault injected under ``fault``; its window, as JSON."""
    return session_of(configuration).revert(fault)


def revert_all(configuration: Mapping[str, Any] | None = None) -> list[str]:
    """Every fault still injected, reverted (a rollback); the ones that would not."""
    return session_of(configuration).revert_all()


# -- probes ----------------------------------------------------------------------------


def readyz_status(configuration: Mapping[str, Any] | None = None) -> int:
    """``GET {base_url}/readyz``'s status: 200 ready, 503 degraded, 0 unreachable."""
    base_url = _config(configuration, "base_url")
    try:
        return httpx.get(f"{base_url}/readyz", timeout=PROBE_TIMEOUT_S, trust_env=False).status_code
    except httpx.HTTPError:
        return 0


def wait_until_ready(
    timeout_s: float = 60.0, configuration: Mapping[str, Any] | None = None
) -> float:
    """Poll ``/readyz`` until it answers 200; the seconds it took, or -1 after
    ``timeout_s`` (a probe that lets the steady state be checked once it can hold), or at
    once when a process of the running chaos test's platform is gone (it will not answer
    again by itself)."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        if readyz_status(configuration) == 200:
            return time.monotonic() - started
        if gone_in(configuration) is not None:
            return -1.0
        time.sleep(0.25)
    return -1.0


def readyz_names(dependency: str, configuration: Mapping[str, Any] | None = None) -> bool:
    """Whether ``/readyz`` says the platform is degraded (503) with ``dependency`` in its
    ``down`` list (DESIGN §4: 503 + JSON naming the dependency that is down)."""
    base_url = _config(configuration, "base_url")
    try:
        answer = httpx.get(f"{base_url}/readyz", timeout=PROBE_TIMEOUT_S, trust_env=False)
        down = answer.json().get("down", []) if answer.status_code == 503 else []
    except (httpx.HTTPError, ValueError, AttributeError):
        return False
    return dependency in down


def metric_value(
    name: str,
    labels: Mapping[str, str] | None = None,
    url: str | None = None,
    configuration: Mapping[str, Any] | None = None,
) -> float:
    """Sum of ``name`` (with ``labels``) at ``url`` (default ``{metrics_url}``); -1 when
    unreadable."""
    url = url or _config(configuration, "metrics_url")
    try:
        text = httpx.get(url, timeout=PROBE_TIMEOUT_S, trust_env=False).text
        samples = parse_metrics(text)
    except (httpx.HTTPError, ValueError):
        return -1.0
    wanted = set((labels or {}).items())
    return sum(v for (n, tags), v in samples.items() if n == name and wanted <= set(tags))


def stream_pending(stream: str, group: str, configuration: Mapping[str, Any] | None = None) -> int:
    """``XPENDING`` of ``group`` on ``stream`` at ``{redis_url}``: entries delivered to a
    consumer and not acknowledged (a killed consumer's are reclaimed from here)."""
    with _redis(configuration) as client:
        return _pending(client, stream, group)


def wait_for_pending(
    stream: str,
    group: str,
    minimum: int = 1,
    timeout_s: float = 10.0,
    configuration: Mapping[str, Any] | None = None,
) -> int:
    """Poll ``XPENDING`` (every 5 ms, at most ``timeout_s``) for the moment a read hands
    entries out: the count rising to at least ``minimum``. A kill then has the whole of
    the consumer's work on them before it acknowledges (a count merely seen may be
    acknowledged before a kill that takes a Docker API round trip lands). The count
    seen; at the timeout the count then if it is at least ``minimum``, else -1."""
    deadline = time.monotonic() + timeout_s
    with _redis(configuration) as client:
        before = _pending(client, stream, group)
        while time.monotonic() < deadline:
            time.sleep(0.005)
            pending = _pending(client, stream, group)
            if pending >= minimum and pending > before:
                return pending
            before = pending
        return before if before >= minimum else -1


def _redis(configuration: Mapping[str, Any] | None) -> redis.Redis:
    """A client of ``{redis_url}`` (closed on leaving its ``with``)."""
    return redis.Redis.from_url(_config(configuration, "redis_url"), socket_timeout=PROBE_TIMEOUT_S)


def _pending(client: redis.Redis, stream: str, group: str) -> int:
    return int(client.xpending(stream, group)["pending"])


def _config(configuration: Mapping[str, Any] | None, key: str) -> str:
    value = (configuration or {}).get(key)
    if not value:
        raise ValueError(f"this probe needs {key!r} in the experiment's configuration")
    return str(value)
