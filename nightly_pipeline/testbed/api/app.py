"""The API application: shared services, error middleware, routes, lifecycle.

app = build_app(cfg)    # aiohttp Application; startup opens the pool, Redis, pub/sub

While PostgreSQL or Redis is down the API answers 503 (JSON naming the dependency), never
another 5xx and never later than ``http_request_timeout_s``; ``/healthz`` stays 200 and
``/readyz`` answers 503 naming what is down. Nothing needs restarting when a dependency
returns: pools reconnect (``db``), breakers close after a successful trial (``breaker``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import redis.asyncio as aioredis
from aiohttp import web

from nightly_pipeline.testbed import metrics
from nightly_pipeline.testbed.api.auth import Auth
from nightly_pipeline.testbed.api.breaker import (
    BreakerOpen,
    CircuitBreaker,
    count_error,
)
from nightly_pipeline.testbed.api.conversations import Conversations
from nightly_pipeline.testbed.api.db import UNAVAILABLE_ERRORS, Database
from nightly_pipeline.testbed.api.errors import (
    ApiError,
    BadRequest,
    Forbidden,
    Unavailable,
)
from nightly_pipeline.testbed.api.gateway import Gateway
from nightly_pipeline.testbed.api.membership import MembershipCache
from nightly_pipeline.testbed.api.messages import Messages, too_large
from nightly_pipeline.testbed.api.passwords import PasswordChecker
from nightly_pipeline.testbed.api.redis_pool import export as export_redis_pool
from nightly_pipeline.testbed.api.redis_pool import watched_redis
from nightly_pipeline.testbed.api.storage import POOL_IN_USE, REDIS_ERRORS, StorageProbes
from nightly_pipeline.testbed.config import TestbedConfig
from nightly_pipeline.testbed.metrics import Counter

log = logging.getLogger(__name__)
T = TypeVar("T")
SECURITY_DENIED = Counter("sanctum_security_denied_total", "Requests denied by authorization")
HTTP_REQUESTS = Counter("http_requests_total", "HTTP requests answered", ["status"])
HTTP_DEADLINES = Counter(
    "http_request_deadline_total", "Requests answered 503 at http_request_timeout_s"
)
EXIT_ON_DB_LOSS = 70  # the exit code of the exit_on_db_loss fault knob


def exit_on_db_loss(exc: BaseException) -> None:
    """The fault knob ``exit_on_db_loss``: an API that dies with its database."""
    log.critical("PostgreSQL went away (%r) and exit_on_db_loss is set: exiting", exc)
    logging.shutdown()
    os._exit(EXIT_ON_DB_LOSS)


class Services:
    """Everything a handler needs; one per process, in ``app[SERVICES]``."""

    def __init__(self, cfg: TestbedConfig) -> None:
        self.cfg = cfg
        breaker = (cfg.breaker_failures, cfg.breaker_reset_s)
        self.pg_breaker = CircuitBreaker("pg", *breaker, enabled=cfg.storage_breaker)
        self.redis_breaker = CircuitBreaker("redis", *breaker, enabled=cfg.storage_breaker)
        self.db = Database(
            cfg.pg_dsn,
            cfg.pg_pool_size,
            cfg.pg_pool_timeout_s,
            self.pg_breaker,
            command_timeout_s=cfg.pg_command_timeout_s,
            on_lost=exit_on_db_loss if cfg.exit_on_db_loss else None,
        )
        timeouts = {"socket_timeout": 2.0, "socket_connect_timeout": 2.0}
        self.redis = watched_redis(cfg.redis_url, max_connections=256, **timeouts)
        self.pubsub_redis = aioredis.Redis.from_url(
            cfg.redis_url, socket_connect_timeout=2.0, health_check_interval=10
        )
        self.passwords = PasswordChecker(cfg.password_hash_n)
        self.auth = Auth(self)
        self.membership = MembershipCache(self)
        self.conversations = Conversations(self)
        self.messages = Messages(self)
        self.gateway = Gateway(self)
        self.probes = StorageProbes(self.db, self.redis, *breaker, enabled=cfg.storage_breaker)
        self.tasks: list[asyncio.Task[None]] = []

    async def redis_call(self, fn: Callable[[], Awaitable[T]]) -> T:
        """``fn()`` through the ``redis`` breaker; unreachable Redis → 503 ``redis``."""
        breaker = self.redis_breaker
        try:
            breaker.before_call()
        except BreakerOpen as exc:
            count_error(exc)
            raise Unavailable("redis", "redis circuit breaker open") from exc
        try:
            result = await fn()
        except REDIS_ERRORS as exc:
            breaker.failure()
            count_error(exc)
            raise Unavailable("redis", f"redis: {type(exc).__name__}") from exc
        except asyncio.CancelledError:
            raise
        except BaseException:
            breaker.success()  # an error reply (WATCH conflict...): Redis answered
            raise
        breaker.success()
        return result

    async def json_body(self, request: web.Request) -> dict[str, Any]:
        try:
            body = await request.json()
        except web.HTTPRequestEntityTooLarge:
            raise too_large() from None
        except (ValueError, UnicodeDecodeError) as exc:
            raise BadRequest("malformed JSON body") from exc
        if not isinstance(body, dict):
            raise BadRequest("the JSON body must be an object")
        return body

    def deny(self, reason: str) -> Forbidden:
        SECURITY_DENIED.inc()
        return Forbidden(reason)


SERVICES = web.AppKey("services", Services)


@web.middleware
async def error_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    try:
        response = await _within_deadline(request, handler)
    except ApiError as exc:
        response = web.json_response(exc.body(), status=exc.status)
    except BreakerOpen as exc:
        response = _json_error(Unavailable(exc.adapter, str(exc)))
    except web.HTTPRequestEntityTooLarge:
        response = _json_error(too_large())
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        response = web.json_response(
            {"error": exc.reason.lower().replace(" ", "_"), "message": exc.text or exc.reason},
            status=exc.status,
        )
    except UNAVAILABLE_ERRORS + REDIS_ERRORS as exc:
        log.warning("%s %s: dependency error %r", request.method, request.path, exc)
        response = _json_error(Unavailable(_dependency(exc), f"{type(exc).__name__}"))
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("%s %s failed", request.method, request.path)
        response = web.json_response({"error": "internal", "message": "internal error"}, status=500)
    HTTP_REQUESTS.labels(status=str(response.status)).inc()
    return response


async def _within_deadline(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """The handler's answer, or 503 ``timeout`` at ``http_request_timeout_s`` (the
    WebSocket upgrade, a long-lived connection, is exempt)."""
    limit = request.app[SERVICES].cfg.http_request_timeout_s
    if limit is None or request.path == "/v1/ws":
        return await handler(request)
    try:
        async with asyncio.timeout(limit) as deadline:
            return await handler(request)
    except TimeoutError as exc:
        if not deadline.expired():
            raise
        HTTP_DEADLINES.inc()
        raise Unavailable("timeout", f"no answer within {limit:g} s") from exc


def _dependency(exc: BaseException) -> str:
    """Which dependency a driver error escaping the adapters came from."""
    module = type(exc).__module__
    return (
        "redis" if module.startswith("redis") else "postgres" if "asyncpg" in module else "storage"
    )


def _json_error(exc: ApiError) -> web.Response:
    return web.json_response(exc.body(), status=exc.status)


# ---------------------------------------------------------------- operational routes


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    s = request.app[SERVICES]

    async def pg() -> None:
        await s.db.ping(1.0)

    async def rd() -> None:
        async with asyncio.timeout(1.0):
            await s.redis.ping()

    names = ("postgres", "redis")
    results = await asyncio.gather(pg(), rd(), return_exceptions=True)
    detail = {
        n: "ok" if r is None else f"down: {type(r).__name__}"
        for n, r in zip(names, results, strict=True)
    }
    detail["pubsub"] = "ok" if s.gateway.subscribed else "down: not subscribed"
    down = [n for n, v in detail.items() if v != "ok"]
    breakers = [s.pg_breaker, s.redis_breaker, s.probes.stream_breaker, s.probes.cache_breaker]
    body = {
        "status": "unavailable" if down else "ready",
        "down": down,
        "detail": detail,
        "breakers": {b.adapter: b.state for b in breakers},
    }
    return web.json_response(body, status=503 if down else 200)


async def version(request: web.Request) -> web.Response:
    return web.json_response({"version": request.app[SERVICES].cfg.version})


async def metrics_handler(request: web.Request) -> web.Response:
    POOL_IN_USE.set(request.app[SERVICES].db.in_use())
    export_redis_pool(request.app[SERVICES].redis)
    return web.Response(text=metrics.render(), content_type="text/plain", charset="utf-8")


def _probe(kind: str) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handler(request: web.Request) -> web.Response:
        probes = request.app[SERVICES].probes
        try:
            if kind == "pg":
                result = await probes.pg()
            elif kind == "stream":
                result = await probes.stream()
            else:
                result = await probes.cache(request.query.get("key", "probe"))
        except BreakerOpen as exc:
            raise Unavailable(kind, str(exc)) from exc
        except REDIS_ERRORS as exc:
            raise Unavailable(kind, f"{kind}: {type(exc).__name__}") from exc
        return web.json_response(result)

    return handler


# ---------------------------------------------------------------- wiring


def build_app(cfg: TestbedConfig) -> web.Application:
    # Room for a base64 ciphertext of max_payload_bytes; larger bodies are a 413.
    app = web.Application(
        middlewares=[error_middleware],
        client_max_size=cfg.max_payload_bytes * 4 // 3 + 64 * 1024,
    )
    s = Services(cfg)
    app[SERVICES] = s
    r = app.router
    r.add_post("/v1/auth/login", s.auth.login)
    r.add_post("/v1/auth/refresh", s.auth.refresh)
    r.add_post("/v1/conversations", s.conversations.create)
    r.add_get("/v1/conversations", s.conversations.list)
    r.add_get("/v1/conversations/{conv}", s.conversations.get)
    r.add_patch("/v1/conversations/{conv}", s.conversations.patch)
    r.add_delete("/v1/conversations/{conv}", s.conversations.delete)
    r.add_post("/v1/conversations/{conv}/participants", s.conversations.add_participant)
    r.add_delete("/v1/conversations/{conv}/participants/{user}", s.conversations.remove_participant)
    r.add_get("/v1/conversations/{conv}/messages", s.messages.history)
    r.add_post("/v1/messages", s.messages.post)
    r.add_get("/v1/ws", s.gateway.handle)
    for kind in ("pg", "stream", "cache"):
        r.add_route("*", f"/v1/storage/{kind}", _probe(kind))
    r.add_get("/metrics", metrics_handler)
    r.add_get("/healthz", healthz)
    r.add_get("/readyz", readyz)
    r.add_get("/version", version)
    app.on_startup.append(_startup)
    app.on_shutdown.append(_shutdown)
    app.on_cleanup.append(_cleanup)
    return app


async def _startup(app: web.Application) -> None:
    s = app[SERVICES]
    await asyncio.to_thread(s.passwords.warm)  # before any login (api/passwords.py)
    await s.db.open()
    task = asyncio.create_task(s.gateway.run_pubsub(), name="pubsub")
    task.add_done_callback(_side_task_done)
    s.tasks.append(task)


def _side_task_done(task: asyncio.Task[None]) -> None:
    """A dead side task stops the process instead of leaving it half-alive."""
    if task.cancelled():
        return
    exc = task.exception()
    log.critical("side task %s died: %r; shutting down", task.get_name(), exc)
    import os
    import signal

    os.kill(os.getpid(), signal.SIGTERM)


async def _shutdown(app: web.Application) -> None:
    await app[SERVICES].gateway.close_all()


CANCEL_ROUNDS = 20
CANCEL_WAIT_S = 0.25


async def _cleanup(app: web.Application) -> None:
    """Cancel the side tasks, again if need be: a cancel that lands inside redis-py's
    connect timeout comes back as a TimeoutError, which the Pub/Sub loop takes for an
    outage and resubscribes; the next cancel lands in its back-off sleep. Bounded."""
    s = app[SERVICES]
    for _ in range(CANCEL_ROUNDS):
        pending = [t for t in s.tasks if not t.done()]
        if not pending:
            break
        for task in pending:
            task.cancel()
        await asyncio.wait(pending, timeout=CANCEL_WAIT_S)
    else:
        names = [t.get_name() for t in s.tasks if not t.done()]
        log.error("side tasks survived %d cancels: %s", CANCEL_ROUNDS, names)
    await s.db.close()
    s.passwords.close()
    for client in (s.redis, s.pubsub_redis):
        with contextlib.suppress(Exception):
            await client.aclose()
