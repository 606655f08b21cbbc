"""Helpers shared by the conversation tests (02, 03): control-plane sessions that know
their user id, requests tagged with the participant cache's answer (``X-Cache``), and the
cache hit ratio from the platform's counters.

The cache tag comes from the response, so a tagged request is recorded here, with the
same k6 names and semantics as ``RecordingHttp.request`` (``http_reqs``,
``http_req_duration``, ``http_req_latency``, ``http_req_failed``), plus ``cache:hit`` or
``cache:miss`` when the target answered the header.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass

import httpx

from nightly_pipeline.loadgen.http_client import HttpResponse
from nightly_pipeline.loadgen.safety import check_target
from nightly_pipeline.loadgen.vu import Vu
from nightly_pipeline.suite.control import ControlPlaneError
from nightly_pipeline.suite.sampling import Samples, counter_delta
from nightly_pipeline.testbed.target import Target

CACHE_HITS = "messaging_participant_cache_hits_total"
CACHE_MISSES = "messaging_participant_cache_misses_total"
TOKEN_REFRESH_S = 600.0
"""Log in again before the platform's 15-minute access tokens expire."""


@dataclass
class Session:
    username: str
    user_id: int
    token: str

    def headers(self, *extra: tuple[str, str]) -> list[tuple[str, str]]:
        return [("Authorization", f"Bearer {self.token}"), *extra]


class Api:
    """Plain, synchronous HTTP for set-up and bounded observation phases (not the hot path)."""

    def __init__(self, target: Target, timeout_s: float = 10.0) -> None:
        check_target(target.base_url, target.allow_hosts)
        self.target = target
        self.client = httpx.Client(base_url=target.base_url, timeout=timeout_s, trust_env=False)

    def __enter__(self) -> Api:
        return self

    def __exit__(self, *exc: object) -> None:
        self.client.close()

    def _ok(self, response: httpx.Response, what: str) -> dict:
        if response.status_code >= 300:
            raise ControlPlaneError(
                f"{what} on {self.target.name}: HTTP {response.status_code} {response.text[:300]}"
            )
        return response.json()

    def login(self, username: str) -> Session:
        body = {"username": username, "password": self.target.password}
        answer = self._ok(self.client.post("/v1/auth/login", json=body), f"login of {username}")
        return Session(username, int(answer["user_id"]), answer["access_token"])

    def create(self, owner: Session, others: Sequence[Session], title: str) -> dict:
        response = self.client.post(
            "/v1/conversations",
            json={"title": title, "participants": [o.user_id for o in others]},
            headers=dict(owner.headers()),
        )
        return self._ok(response, f"create a conversation for {owner.username}")

    def get(self, session: Session, conv: str) -> httpx.Response:
        return self.client.get(f"/v1/conversations/{conv}", headers=dict(session.headers()))


def cache_tag(response: HttpResponse | httpx.Response) -> str | None:
    """``hit``/``miss`` from the ``X-Cache`` header, None when the target has none."""
    if isinstance(response, httpx.Response):
        value = response.headers.get("X-Cache")
    else:
        raw = response.header("X-Cache")
        value = raw.decode("latin-1") if raw is not None else None
    value = (value or "").strip().lower()
    return value if value in ("hit", "miss") else None


async def tagged_request(
    vu: Vu,
    method: str,
    path: str,
    *,
    name: str,
    headers: Iterable[tuple[str, str]] = (),
    body: bytes | None = None,
    expected: Collection[int] = (),
) -> HttpResponse:
    """One request recorded like ``vu.http.request``, tagged ``cache:<X-Cache>`` as well."""
    return await vu.http.request(
        method,
        path,
        body=body,
        headers=list(headers),
        tags={"name": name},
        expected=expected,
        tag_from_response=_cache_tags,
    )


def _cache_tags(response: HttpResponse) -> dict[str, str] | None:
    cache = cache_tag(response)
    return None if cache is None else {"cache": cache}


def json_body(payload: Mapping[str, object]) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()


def version_of(response: HttpResponse) -> int | None:
    """The conversation's version from its ETag (or body); None if absent."""
    raw = response.header("ETag")
    if raw is not None:
        try:
            return int(raw.decode("latin-1").strip().removeprefix("W/").strip('"'))
        except ValueError:
            pass
    try:
        return int(response.json()["version"])
    except (ValueError, KeyError, TypeError):
        return None


def cache_hit_ratio(samples: Samples, setup_hits: int = 0, setup_misses: int = 0) -> float | None:
    """Hits / (hits + misses) of the participant cache over the run, from the platform's
    counters, without the look-ups the test's own set-up made (counted by ``X-Cache``)."""
    hits = counter_delta(samples, CACHE_HITS)
    misses = counter_delta(samples, CACHE_MISSES)
    if hits is None or misses is None:
        return None
    hits, misses = max(0.0, hits - setup_hits), max(0.0, misses - setup_misses)
    return hits / (hits + misses) if hits + misses > 0 else None
