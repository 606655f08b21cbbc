"""What the conversation tests (02 conversation_crud, 03 participant_invalidation) do
on the hot path: requests tagged with the participant cache's answer (``X-Cache``), the
conversation's version from its ETag, compact JSON bodies; and the cache's hit ratio from
the platform's counters.

The cache tag comes from the response, so a tagged request is recorded with the same k6
names and semantics as ``RecordingHttp.request`` (``http_reqs``, ``http_req_duration``,
``http_req_latency``, ``http_req_failed``), plus ``cache:hit`` or ``cache:miss`` when the
target answered the header.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Mapping

import httpx

from nightly_pipeline.loadgen.http_client import HttpResponse
from nightly_pipeline.loadgen.vu import Vu
from nightly_pipeline.suite.sampling import Samples, counter_delta

CACHE_HITS = "messaging_participant_cache_hits_total"
CACHE_MISSES = "messaging_participant_cache_misses_total"
JSON = ("Content-Type", "application/json")


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


def cache_hit_ratio(
    samples: Samples, setup_hits: float = 0.0, setup_misses: float = 0.0
) -> float | None:
    """Hits / (hits + misses) of the participant cache over the run, from the platform's
    counters, without the look-ups the test's own set-up made (counted by ``X-Cache``)."""
    hits = counter_delta(samples, CACHE_HITS)
    misses = counter_delta(samples, CACHE_MISSES)
    if hits is None or misses is None:
        return None
    hits, misses = max(0.0, hits - setup_hits), max(0.0, misses - setup_misses)
    return hits / (hits + misses) if hits + misses > 0 else None
