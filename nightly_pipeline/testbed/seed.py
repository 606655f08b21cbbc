"""Seed users and the password hash format shared with the API.

    seed_users(dsn, 1000, "secret")   # user0001..user1000, as the superuser; idempotent

Hash format: ``scrypt$<n>$<r>$<p>$<salt b64>$<hash b64>`` (hashlib.scrypt). Seeded users
sharing a password share one hash and salt: hashing once keeps seeding 10,000 users fast,
while every login still pays the full scrypt cost.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import os

import asyncpg

SCRYPT_R = 8
SCRYPT_P = 1
_DKLEN = 32


def scrypt_memory_bytes(n: int, r: int = SCRYPT_R, p: int = SCRYPT_P) -> int:
    """The block one scrypt hash of cost ``n`` allocates (OpenSSL: ``B`` and ``V`` at once)."""
    return 128 * r * (n + p + 2)


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    maxmem = scrypt_memory_bytes(n, r, p) + 1024 * 1024
    return hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, maxmem=maxmem, dklen=_DKLEN)


def hash_password(password: str, n: int = 2**14) -> str:
    salt = os.urandom(16)
    digest = _scrypt(password, salt, n, SCRYPT_R, SCRYPT_P)
    b64 = base64.b64encode
    return f"scrypt${n}${SCRYPT_R}${SCRYPT_P}${b64(salt).decode()}${b64(digest).decode()}"


def verify_password(password: str, encoded: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = encoded.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest)
        actual = _scrypt(password, base64.b64decode(salt), int(n), int(r), int(p))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, expected)


def username(i: int, n: int) -> str:
    return f"user{i:0{max(4, len(str(n)))}d}"


async def seed_users_async(dsn: str, n: int, password: str, hash_n: int = 2**14) -> dict[str, int]:
    """Create user0001..userNNNN (existing ones are kept); return {username: id}."""
    names = [username(i, n) for i in range(1, n + 1)]
    encoded = hash_password(password, hash_n)
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        await conn.execute(
            "INSERT INTO users (username, password_hash)"
            " SELECT u, $2 FROM unnest($1::text[]) AS u ORDER BY u"
            " ON CONFLICT (username) DO NOTHING",
            names,
            encoded,
        )
        rows = await conn.fetch(
            "SELECT username, id FROM users WHERE username = ANY($1::text[])", names
        )
    finally:
        await conn.close()
    return {r["username"]: r["id"] for r in rows}


def seed_users(dsn: str, n: int, password: str, hash_n: int = 2**14) -> dict[str, int]:
    """Blocking :func:`seed_users_async` (not from inside a running event loop)."""
    return asyncio.run(seed_users_async(dsn, n, password, hash_n))
