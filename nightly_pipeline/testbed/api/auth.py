"""Login, refresh and bearer-token checks.

Tokens are JWT HS256, signed with ``hmac`` (no dependency for ~30 lines). Claims: ``sub``
(user id as a string), ``typ`` (``access``/``refresh``), ``jti``, ``sid``, ``iat``, ``exp``.
A login creates the session ``auth:session:<sid>`` in Redis (TTL = refresh lifetime; the
refresh token's first ``jti`` is the ``sid``). Access tokens are checked statelessly
(signature + expiry); a refresh needs the session and rotates the refresh token.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from nightly_pipeline.testbed.api.errors import BadRequest, Unauthorized, Unavailable
from nightly_pipeline.testbed.metrics import Counter, Histogram

LOGINS = Counter("auth_login_total", "Login attempts", ["result"])
TOKEN_SECONDS = Histogram(
    "auth_token_generation_seconds",
    "Time to issue a token pair (signing and session write)",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
)
SESSION_PREFIX = "auth:session:"
_HEADER = {"alg": "HS256", "typ": "JWT"}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign(claims: dict[str, Any], secret: str) -> str:
    head = _b64(json.dumps(_HEADER, separators=(",", ":")).encode())
    body = _b64(json.dumps(claims, separators=(",", ":")).encode())
    mac = hmac.new(secret.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{_b64(mac)}"


def verify(token: str, secret: str, typ: str, now: float | None = None) -> dict[str, Any]:
    """The claims of a valid, unexpired token of type ``typ``; else :class:`Unauthorized`."""
    try:
        head, body, mac = token.split(".")
        expected = hmac.new(secret.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
        if not hmac.compare_digest(_unb64(mac), expected):
            raise Unauthorized("bad token signature")
        if json.loads(_unb64(head)).get("alg") != "HS256":
            raise Unauthorized("bad token algorithm")
        claims = json.loads(_unb64(body))
    except (ValueError, TypeError, AttributeError) as exc:
        raise Unauthorized("malformed token") from exc
    if not isinstance(claims, dict) or claims.get("typ") != typ:
        raise Unauthorized("wrong token type")
    if float(claims.get("exp", 0)) <= (time.time() if now is None else now):
        raise Unauthorized("token expired")
    return claims


@dataclass(frozen=True)
class Principal:
    user_id: int
    jti: str


def bearer(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    if header[:7].lower() == "bearer ":
        return header[7:].strip()
    return request.query.get("token")


class Auth:
    def __init__(self, services: Any) -> None:
        self.s = services
        self.cfg = services.cfg
        self.leaked: list[bytes] = []  # fault knob leak_bytes_per_login

    def principal(self, request: web.Request) -> Principal:
        token = bearer(request)
        if not token:
            raise Unauthorized("missing bearer token")
        claims = verify(token, self.cfg.jwt_secret, "access")
        try:
            return Principal(int(claims["sub"]), str(claims["jti"]))
        except (KeyError, ValueError) as exc:
            raise Unauthorized("bad token claims") from exc

    async def _issue(self, user_id: int, sid: str | None = None) -> dict[str, Any]:
        t0 = time.perf_counter()
        now = int(time.time())
        sid = sid or uuid.uuid4().hex
        cfg = self.cfg
        common = {"sub": str(user_id), "sid": sid, "iat": now}
        access = sign(
            {
                **common,
                "typ": "access",
                "jti": uuid.uuid4().hex,
                "exp": now + cfg.access_token_ttl_s,
            },
            cfg.jwt_secret,
        )
        refresh_jti = uuid.uuid4().hex
        refresh = sign(
            {**common, "typ": "refresh", "jti": refresh_jti, "exp": now + cfg.refresh_token_ttl_s},
            cfg.jwt_secret,
        )
        session = json.dumps({"user_id": user_id, "refresh_jti": refresh_jti, "iat": now})
        await self.s.redis_call(
            lambda: self.s.redis.set(SESSION_PREFIX + sid, session, ex=cfg.refresh_token_ttl_s)
        )
        TOKEN_SECONDS.observe(time.perf_counter() - t0)
        return {
            "access_token": access,
            "refresh_token": refresh,
            "token_type": "Bearer",
            "expires_in": cfg.access_token_ttl_s,
            "user_id": user_id,
        }

    async def login(self, request: web.Request) -> web.Response:
        body = await self.s.json_body(request)
        username, password = body.get("username"), body.get("password")
        if not isinstance(username, str) or not isinstance(password, str):
            LOGINS.labels(result="invalid").inc()
            raise BadRequest("username and password (strings) are required")
        try:
            async with self.s.db.tx() as conn:
                row = await conn.fetchrow(
                    "SELECT id, password_hash FROM users WHERE username = $1", username
                )
        except Unavailable:
            LOGINS.labels(result="error").inc()
            raise
        ok = await self.s.passwords.check(password, row["password_hash"] if row else None)
        if not ok:
            LOGINS.labels(result="bad_credentials").inc()
            raise Unauthorized("bad credentials")
        try:
            tokens = await self._issue(row["id"])
        except Unavailable:
            LOGINS.labels(result="error").inc()
            raise
        LOGINS.labels(result="ok").inc()
        if self.cfg.leak_bytes_per_login:  # the fault knob: memory never given back
            self.leaked.append(b"L" * self.cfg.leak_bytes_per_login)  # touched pages
        return web.json_response(tokens)

    async def refresh(self, request: web.Request) -> web.Response:
        body = await self.s.json_body(request)
        token = body.get("refresh_token")
        if not isinstance(token, str):
            raise BadRequest("refresh_token (string) is required")
        claims = verify(token, self.cfg.jwt_secret, "refresh")
        sid = str(claims.get("sid", ""))
        raw = await self.s.redis_call(lambda: self.s.redis.get(SESSION_PREFIX + sid))
        session = json.loads(raw) if raw else None
        if not session or session.get("refresh_jti") != claims.get("jti"):
            raise Unauthorized("session expired or refresh token already used")
        return web.json_response(await self._issue(int(claims["sub"]), sid))
