"""Conversations and participants. Every query runs as the caller (RLS): a conversation
the caller is not in is invisible, answered 403 (404 if it does not exist at all)."""

from __future__ import annotations

import json
import uuid
from typing import Any

import asyncpg
from aiohttp import web

from nightly_pipeline.testbed.api.errors import (
    ApiError,
    BadRequest,
    Conflict,
    NotFound,
    PreconditionRequired,
)
from nightly_pipeline.testbed.metrics import Counter

VERSION_CONFLICTS = Counter(
    "messaging_conversation_version_conflicts_total", "PATCH/DELETE with a stale If-Match"
)
_COLUMNS = "id, owner_id, title, version, last_seq, created_at, updated_at"
_VERSION_MATCHES = "($2::int IS NULL OR version = $2::int)"  # NULL: no If-Match (fault knob)


def conv_id(request: web.Request) -> str:
    try:
        return str(uuid.UUID(request.match_info["conv"]))
    except ValueError as exc:
        raise NotFound("no such conversation") from exc


def render(row: asyncpg.Record, participants: list[int] | None = None) -> dict[str, Any]:
    out = {
        "id": str(row["id"]),
        "owner_id": row["owner_id"],
        "title": row["title"],
        "version": row["version"],
        "last_seq": row["last_seq"],
        "created_at": row["created_at"].isoformat(),
        "updated_at": row["updated_at"].isoformat(),
    }
    if participants is not None:
        out["participants"] = participants
    return out


def if_match(request: web.Request) -> int:
    raw = request.headers.get("If-Match")
    if raw is None:
        raise PreconditionRequired("If-Match: <version> is required")
    try:
        return int(raw.strip().removeprefix("W/").strip('"'))
    except ValueError as exc:
        raise BadRequest("If-Match must be a version number") from exc


async def resolve_users(conn: asyncpg.Connection, refs: Any) -> list[int]:
    """User ids from a list of ids and/or usernames; 400 on unknown users."""
    if not isinstance(refs, list):
        raise BadRequest("participants must be a list of user ids or usernames")
    ids = {r for r in refs if isinstance(r, int) and not isinstance(r, bool)}
    names = [r for r in refs if isinstance(r, str)]
    if len(ids) + len(names) != len(refs):
        raise BadRequest("participants must be user ids or usernames")
    rows = await conn.fetch(
        "SELECT id, username FROM users WHERE id = ANY($1::bigint[]) OR username = ANY($2)",
        list(ids),
        names,
    )
    found_ids = {r["id"] for r in rows}
    found_names = {r["username"] for r in rows}
    missing = [i for i in ids if i not in found_ids] + [n for n in names if n not in found_names]
    if missing:
        raise BadRequest("unknown users", unknown=missing)
    return sorted(found_ids)


class Conversations:
    def __init__(self, services: Any) -> None:
        self.s = services

    async def hidden(self, conn: asyncpg.Connection, conv: str, what: str) -> Exception:
        """The error for a conversation the caller cannot see: 403 (counted) or 404."""
        if await conn.fetchval("SELECT testbed_conversation_exists($1)", conv):
            return self.s.deny(f"not a participant ({what})")
        return NotFound("no such conversation")

    async def create(self, request: web.Request) -> web.Response:
        me = self.s.auth.principal(request).user_id
        body = await self.s.json_body(request)
        title = body.get("title", "")
        if not isinstance(title, str) or len(title) > 200:
            raise BadRequest("title must be a string of at most 200 characters")
        new_id = str(uuid.uuid4())
        async with self.s.db.tx(me) as conn:
            others = await resolve_users(conn, body.get("participants", []))
            members = sorted({me, *others})
            await conn.execute(
                "INSERT INTO conversations (id, owner_id, title) VALUES ($1, $2, $3)",
                new_id,
                me,
                title,
            )
            await conn.execute(
                "INSERT INTO participants (conversation_id, user_id)"
                " SELECT $1, unnest($2::bigint[])",
                new_id,
                members,
            )
            row = await conn.fetchrow(f"SELECT {_COLUMNS} FROM conversations WHERE id = $1", new_id)
        return web.json_response(render(row, members), status=201, headers=_etag(row))

    async def list(self, request: web.Request) -> web.Response:
        me = self.s.auth.principal(request).user_id
        limit = _int_param(request, "limit", 100, 1, 1000)
        async with self.s.db.tx(me) as conn:
            # RLS alone restricts the rows; the join only lets the index do the work.
            rows = await conn.fetch(
                f"SELECT {_COLUMNS} FROM conversations WHERE id IN"
                " (SELECT conversation_id FROM participants WHERE user_id = $1)"
                " ORDER BY updated_at DESC LIMIT $2",
                me,
                limit,
            )
        return web.json_response({"conversations": [render(r) for r in rows]})

    async def get(self, request: web.Request) -> web.Response:
        """The participants come from the membership cache (``X-Cache: hit|miss`` on every
        answer, 403 included); whether the caller may see the row is still decided by RLS,
        so a stale cache entry can neither grant nor refuse access."""
        me, conv = self.s.auth.principal(request).user_id, conv_id(request)
        cached, hit = await self.s.membership.lookup(conv, me)
        cache = {"X-Cache": "hit" if hit else "miss"}
        async with self.s.db.tx(me) as conn:
            row = await conn.fetchrow(f"SELECT {_COLUMNS} FROM conversations WHERE id = $1", conv)
            if row is None:
                error = await self.hidden(conn, conv, "get")
                assert isinstance(error, ApiError)
                return web.json_response(error.body(), status=error.status, headers=cache)
            members = sorted(cached)
            if me not in cached:  # the cache has not caught up with this caller yet
                found = await conn.fetch(
                    "SELECT user_id FROM participants WHERE conversation_id = $1", conv
                )
                members = sorted(m["user_id"] for m in found)
        return web.json_response(render(row, members), headers={**_etag(row), **cache})

    async def patch(self, request: web.Request) -> web.Response:
        me, conv = self.s.auth.principal(request).user_id, conv_id(request)
        expected = self._expected_version(request)
        body = await self.s.json_body(request)
        title = body.get("title")
        if not isinstance(title, str) or len(title) > 200:
            raise BadRequest("title must be a string of at most 200 characters")
        async with self.s.db.tx(me) as conn:
            row = await conn.fetchrow(
                "UPDATE conversations SET title = $3, version = version + 1, updated_at = now()"
                f" WHERE id = $1 AND {_VERSION_MATCHES} RETURNING {_COLUMNS}",
                conv,
                expected,
                title,
            )
            if row is None:
                raise await self._stale_or_hidden(conn, conv, expected, "patch")
        return web.json_response(render(row), headers=_etag(row))

    async def delete(self, request: web.Request) -> web.Response:
        me, conv = self.s.auth.principal(request).user_id, conv_id(request)
        expected = self._expected_version(request)
        async with self.s.db.tx(me) as conn:
            deleted = await conn.fetchval(
                f"DELETE FROM conversations WHERE id = $1 AND {_VERSION_MATCHES} RETURNING id",
                conv,
                expected,
            )
            if deleted is None:
                raise await self._stale_or_hidden(conn, conv, expected, "delete")
        await self.s.membership.invalidate(conv)
        return web.Response(status=204)

    def _expected_version(self, request: web.Request) -> int | None:
        """The ``If-Match`` version a write must find; ``None`` (any version) when the
        fault knob ``optimistic_locking`` is off: the header is not even read."""
        return if_match(request) if self.s.cfg.optimistic_locking else None

    async def _stale_or_hidden(
        self, conn: asyncpg.Connection, conv: str, expected: int | None, what: str
    ) -> Exception:
        current = await conn.fetchval("SELECT version FROM conversations WHERE id = $1", conv)
        if current is None:
            return await self.hidden(conn, conv, what)
        VERSION_CONFLICTS.inc()
        return Conflict("stale version", expected=expected, current=current)

    async def add_participant(self, request: web.Request) -> web.Response:
        me, conv = self.s.auth.principal(request).user_id, conv_id(request)
        body = await self.s.json_body(request)
        ref = body.get("user_id", body.get("username"))
        async with self.s.db.tx(me) as conn:
            if not await conn.fetchval("SELECT testbed_is_participant($1)", conv):
                raise await self.hidden(conn, conv, "add participant")
            (user,) = await resolve_users(conn, [ref])
            added = await conn.fetchval(
                "INSERT INTO participants (conversation_id, user_id) VALUES ($1, $2)"
                " ON CONFLICT DO NOTHING RETURNING user_id",
                conv,
                user,
            )
        await self.s.membership.invalidate(conv)
        return web.json_response(
            {"conversation_id": conv, "user_id": user, "added": added is not None},
            status=201 if added is not None else 200,
        )

    async def remove_participant(self, request: web.Request) -> web.Response:
        me, conv = self.s.auth.principal(request).user_id, conv_id(request)
        try:
            user = int(request.match_info["user"])
        except ValueError as exc:
            raise NotFound("no such participant") from exc
        async with self.s.db.tx(me) as conn:
            if not await conn.fetchval("SELECT testbed_is_participant($1)", conv):
                raise await self.hidden(conn, conv, "remove participant")
            removed = await conn.fetchval(
                "DELETE FROM participants WHERE conversation_id = $1 AND user_id = $2"
                " RETURNING user_id",
                conv,
                user,
            )
        if removed is None:
            raise NotFound("not a participant")
        await self.s.membership.invalidate(conv)
        return web.Response(status=204)


def _etag(row: asyncpg.Record) -> dict[str, str]:
    return {"ETag": json.dumps(str(row["version"]))}


def _int_param(request: web.Request, name: str, default: int, lo: int, hi: int) -> int:
    try:
        value = int(request.query.get(name, default))
    except ValueError as exc:
        raise BadRequest(f"{name} must be an integer") from exc
    return max(lo, min(hi, value))
