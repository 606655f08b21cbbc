"""Messages: ``POST /v1/messages`` (message + outbox row in one statement's transaction,
seq per conversation, idempotent on (conversation_id, client_msg_id)) and the history read."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import uuid
from typing import Any

import asyncpg
from aiohttp import web

from nightly_pipeline.testbed.api.conversations import conv_id
from nightly_pipeline.testbed.api.errors import BadRequest, PayloadTooLarge
from nightly_pipeline.testbed.metrics import Counter, Histogram

PAYLOAD_REJECTS = Counter("messaging_payload_rejects_total", "Messages rejected as too large")
MESSAGE_SIZE = Histogram(
    "messaging_message_size_bytes",
    "Decoded ciphertext size of accepted messages",
    buckets=tuple(2.0**k for k in range(6, 22)),  # 64 B .. 2 MiB
)
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_POST_SQL = "SELECT message_id, seq, duplicate FROM testbed_post_message($1, $2, $3, $4, $5)"
_CLIENT_MSG_ID_KEY = "messages_conversation_id_client_msg_id_key"


def too_large() -> PayloadTooLarge:
    PAYLOAD_REJECTS.inc()
    return PayloadTooLarge("payload too large")


def decode_payload(body: dict[str, Any], max_bytes: int) -> tuple[str, str, bytes, str]:
    """Validated (conversation_id, client_msg_id, ciphertext, sha256) or 400/413."""
    try:
        conv = str(uuid.UUID(str(body.get("conversation_id"))))
    except ValueError as exc:
        raise BadRequest("conversation_id must be a UUID") from exc
    client_msg_id = body.get("client_msg_id")
    if not isinstance(client_msg_id, str) or not 1 <= len(client_msg_id) <= 128:
        raise BadRequest("client_msg_id must be a string of 1..128 characters")
    encoded, digest = body.get("ciphertext"), body.get("sha256")
    if not isinstance(encoded, str) or not isinstance(digest, str):
        raise BadRequest("ciphertext (base64) and sha256 (hex) are required")
    if len(encoded) // 4 * 3 > max_bytes + 3:
        raise too_large()
    try:
        ciphertext = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise BadRequest("ciphertext is not valid base64") from exc
    if len(ciphertext) > max_bytes:
        raise too_large()
    digest = digest.lower()
    if not _HEX64.match(digest):
        raise BadRequest("sha256 must be 64 hex characters")
    if not hmac.compare_digest(hashlib.sha256(ciphertext).hexdigest(), digest):
        raise BadRequest("sha256 does not match the ciphertext")
    return conv, client_msg_id, ciphertext, digest


class Messages:
    def __init__(self, services: Any) -> None:
        self.s = services
        self.leaked: list[bytes] = []

    async def post(self, request: web.Request) -> web.Response:
        me = self.s.auth.principal(request).user_id
        body = await self.s.json_body(request)
        conv, client_msg_id, ciphertext, digest = decode_payload(body, self.s.cfg.max_payload_bytes)
        checked = self.s.cfg.access_control  # fault knob: False checks nobody
        if checked and me not in await self.s.membership.members(conv, me):
            raise self.s.deny("not a participant (post message)")
        row = await self._post(me, conv, client_msg_id, ciphertext, digest)
        if not row["duplicate"]:
            MESSAGE_SIZE.observe(len(ciphertext))
            if self.s.cfg.leak_bytes_per_message:  # the fault knob: memory never given back
                self.leaked.append(b"L" * self.s.cfg.leak_bytes_per_message)  # touched pages
        return web.json_response(
            {
                "message_id": str(row["message_id"]),
                "seq": row["seq"],
                "duplicate": row["duplicate"],
            },
            status=202,
        )

    async def _post(
        self, me: int, conv: str, client_msg_id: str, ciphertext: bytes, digest: str
    ) -> asyncpg.Record:
        """Message + outbox row (or the earlier duplicate) in one round trip: see
        sql/0002_post_message.sql. A unique violation means a concurrent retry of the same
        client_msg_id won the race; nothing was written, and the second call answers it."""
        for attempt in range(2):
            try:
                row = await self.s.db.fetchrow(
                    _POST_SQL, me, conv, client_msg_id, ciphertext, digest
                )
            except asyncpg.InsufficientPrivilegeError as exc:  # RLS USING or WITH CHECK
                raise self.s.deny("not a participant (post message)") from exc
            except asyncpg.UniqueViolationError as exc:
                if attempt or exc.constraint_name != _CLIENT_MSG_ID_KEY:
                    raise
                continue
            assert row is not None  # the function returns exactly one row
            return row
        raise AssertionError("unreachable")

    async def history(self, request: web.Request) -> web.Response:
        me, conv = self.s.auth.principal(request).user_id, conv_id(request)
        try:
            after = int(request.query.get("after", 0))
            limit = max(1, min(1000, int(request.query.get("limit", 100))))
        except ValueError as exc:
            raise BadRequest("after and limit must be integers") from exc
        async with self.s.db.tx(me) as conn:
            if not await conn.fetchval("SELECT testbed_is_participant($1)", conv):
                raise await self.s.conversations.hidden(conn, conv, "messages")
            rows = await conn.fetch(
                "SELECT id, sender_id, client_msg_id, seq, ciphertext, sha256, created_at"
                " FROM messages WHERE conversation_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
                conv,
                after,
                limit,
            )
        return web.json_response(
            {
                "conversation_id": conv,
                "messages": [
                    {
                        "message_id": str(r["id"]),
                        "conversation_id": conv,
                        "sender_id": r["sender_id"],
                        "client_msg_id": r["client_msg_id"],
                        "seq": r["seq"],
                        "ciphertext": base64.b64encode(r["ciphertext"]).decode(),
                        "sha256": r["sha256"],
                        "created_at": r["created_at"].timestamp(),
                    }
                    for r in rows
                ],
            }
        )
