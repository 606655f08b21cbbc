"""POST a JSON payload to a webhook with bounded retries.

Retried: connect errors, timeouts, dropped connections, HTTP 5xx and 429 — with
exponential backoff and jitter, or the server's ``Retry-After`` (capped). Not retried:
any other status (4xx, 3xx: redirects are never followed). Bounded by ``max_attempts``
and by ``max_total_s`` over requests and waits together. Never raises: the outcome is a
``PostResult``. Sleep, clock and randomness are injected so tests need not wait.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from nightly_pipeline.alerts.config import redact
from nightly_pipeline.alerts.model import AlertSettings

log = logging.getLogger("nightly_pipeline.alerts")

RETRYABLE_ERRORS = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)
"""Transport failures worth another attempt (connect, read, write, timeouts, drops)."""
MAX_ERROR_BODY = 200


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 4
    timeout_s: float = 10.0
    backoff_base_s: float = 0.5
    backoff_max_s: float = 8.0
    retry_after_max_s: float = 30.0
    max_total_s: float = 60.0

    @classmethod
    def from_settings(cls, settings: AlertSettings) -> RetryPolicy:
        return cls(
            max_attempts=settings.max_attempts,
            timeout_s=settings.timeout_s,
            backoff_base_s=settings.backoff_base_s,
            backoff_max_s=settings.backoff_max_s,
            retry_after_max_s=settings.retry_after_max_s,
            max_total_s=settings.max_total_s,
        )

    def backoff(self, attempt: int, rng: random.Random) -> float:
        """Wait after failed attempt ``attempt`` (1-based): equal jitter over an
        exponential ceiling, i.e. uniform in [ceiling / 2, ceiling]."""
        ceiling = min(self.backoff_max_s, self.backoff_base_s * 2 ** (attempt - 1))
        return ceiling / 2 + rng.random() * ceiling / 2


@dataclass(frozen=True)
class PostResult:
    ok: bool
    attempts: int
    status_code: int | None = None
    error: str | None = None


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value (delta-seconds or HTTP-date)."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    if seconds != seconds:  # NaN
        return None
    return max(0.0, seconds)


def _retry_after(response: httpx.Response) -> float | None:
    """The server's requested wait: the header, else Discord's JSON ``retry_after``."""
    seconds = parse_retry_after(response.headers.get("retry-after"))
    if seconds is not None:
        return seconds
    try:
        body = response.json()
    except ValueError:
        return None
    value = body.get("retry_after") if isinstance(body, dict) else None
    return parse_retry_after(str(value)) if isinstance(value, int | float) else None


class WebhookPoster:
    """Posts JSON with the retry policy; one per ``send_alerts`` call (shares a client)."""

    def __init__(
        self,
        client: httpx.Client,
        policy: RetryPolicy,
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self._client = client
        self._policy = policy
        self._sleep = sleep
        self._clock = clock
        self._rng = rng or random.Random()

    def post_json(self, url: str, payload: Mapping[str, Any], *, channel: str) -> PostResult:
        policy = self._policy
        where = redact(url)
        start = self._clock()
        attempt, status, error = 0, None, "not attempted"
        while attempt < policy.max_attempts:
            remaining = policy.max_total_s - (self._clock() - start)
            if remaining <= 0:
                error = f"{error}; gave up after {policy.max_total_s:g} s"
                break
            attempt += 1
            retry_after: float | None = None
            try:
                response = self._client.post(
                    url, json=payload, timeout=min(policy.timeout_s, remaining)
                )
            except RETRYABLE_ERRORS as exc:
                status, error = None, _describe(exc, url)
            except httpx.HTTPError as exc:
                error = _describe(exc, url)
                log.warning("%s alert to %s failed (not retried): %s", channel, where, error)
                return PostResult(False, attempt, None, error)
            else:
                status = response.status_code
                if response.is_success:
                    return PostResult(True, attempt, status, None)
                error = f"HTTP {status}: {response.text[:MAX_ERROR_BODY].strip()}".rstrip(": ")
                if not (status == 429 or status >= 500):
                    log.warning("%s alert to %s failed (not retried): %s", channel, where, error)
                    return PostResult(False, attempt, status, error)
                if status in (429, 503):
                    retry_after = _retry_after(response)
            if attempt >= policy.max_attempts:
                break
            if retry_after is not None:
                wait = min(retry_after, policy.retry_after_max_s)
            else:
                wait = policy.backoff(attempt, self._rng)
            if self._clock() - start + wait >= policy.max_total_s:
                error = f"{error}; gave up: next wait {wait:.3g} s exceeds the time budget"
                break
            log.info(
                "%s alert to %s: attempt %d failed (%s); retrying in %.3g s",
                channel, where, attempt, error, wait,
            )  # fmt: skip
            self._sleep(wait)
        log.error("%s alert to %s failed after %d attempt(s): %s", channel, where, attempt, error)
        return PostResult(False, attempt, status, error)


def _describe(exc: Exception, url: str) -> str:
    text = str(exc).replace(url, redact(url)) or "no detail"
    return f"{type(exc).__name__}: {text}"
