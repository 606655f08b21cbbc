"""The API process against real PostgreSQL and Redis (one stack for the module): RLS in
SQL and through HTTP, optimistic versions, auth, payload checks, the outbox write, the
WebSocket gateway, and a PostgreSQL outage through the fault proxy (last)."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import socket
import struct
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from websockets.exceptions import InvalidStatus
from websockets.sync.client import ClientConnection, connect

from nightly_pipeline.chaos import ProxyControl
from nightly_pipeline.testbed import migrate
from nightly_pipeline.testbed.api.auth import sign
from tests.testbed.api_fixtures import (
    ApiStack,
    api_stack,
    create_conversation,
    message_body,
    sql,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory, system_dir: Path) -> Iterator[ApiStack]:
    run_dir = tmp_path_factory.mktemp("api") / "run"
    overrides = {"ws_heartbeat_s": 3.0, "ws_send_queue": 20, "breaker_reset_s": 0.5}
    with api_stack(run_dir, system_dir, **overrides) as stack:
        yield stack


@pytest.fixture(scope="module")
def tokens(api: ApiStack) -> dict[str, str]:
    return {name: api.login(name) for name in ("user0001", "user0002", "user0003")}


@contextlib.contextmanager
def _ws(api: ApiStack, token: str) -> Iterator[ClientConnection]:
    """A registered socket: the pong to our ping comes after the server registered it."""
    with connect(api.ws_url, additional_headers={"Authorization": f"Bearer {token}"}) as ws:
        ws.send(json.dumps({"type": "ping"}))
        assert json.loads(ws.recv(timeout=5)) == {"type": "pong"}
        yield ws


def _frame(payload: bytes) -> bytes:
    """A masked client text frame (all-zero mask key), payload < 126 bytes."""
    return bytes([0x81, 0x80 | len(payload)]) + b"\0\0\0\0" + payload


@contextlib.contextmanager
def _raw_ws(api: ApiStack, token: str) -> Iterator[socket.socket]:
    """A registered WebSocket that then neither reads nor answers pings (a dead peer)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", int(api.base_url.rsplit(":", 1)[1])))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        f"GET /v1/ws?token={token} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    sock.sendall(_frame(b'{"type":"ping"}'))
    sock.settimeout(5)
    seen = b""
    while b"pong" not in seen:
        chunk = sock.recv(4096)
        assert chunk, "closed before the pong"
        seen += chunk
    assert seen.startswith(b"HTTP/1.1 101")
    try:
        yield sock
    finally:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()


def _wait_metric(api: ApiStack, key: str, at_least: float, timeout_s: float) -> float:
    deadline = time.monotonic() + timeout_s
    while (value := api.metric(key)) < at_least:
        assert time.monotonic() < deadline, f"{key} = {value}, wanted >= {at_least}"
        time.sleep(0.1)
    return value


# ---------------------------------------------------------------- operational


def test_health_version_and_metrics(api: ApiStack) -> None:
    with api.client() as c:
        assert c.get("/healthz").status_code == 200
        ready = c.get("/readyz")
        assert ready.status_code == 200, ready.text
        assert c.get("/version").json() == {"version": api.config.version}
        text = c.get("/metrics").text
    assert "# TYPE auth_login_total counter" in text
    assert "# TYPE messaging_message_size_bytes histogram" in text


def test_storage_probes(api: ApiStack) -> None:
    with api.client() as c:
        assert c.get("/v1/storage/pg").json()["ok"] is True
        assert c.post("/v1/storage/stream").status_code == 200
        key = uuid.uuid4().hex
        assert c.get("/v1/storage/cache", params={"key": key}).json()["hit"] is False
        assert c.get("/v1/storage/cache", params={"key": key}).json()["hit"] is True
    m = api.metrics()
    assert m["storage_cache_hits_total"] >= 1
    assert m["storage_cache_misses_total"] >= 1


# ---------------------------------------------------------------- auth


def test_login_ok_and_bad_credentials_are_counted(api: ApiStack) -> None:
    ok0 = api.metric('auth_login_total{result="ok"}')
    bad0 = api.metric('auth_login_total{result="bad_credentials"}')
    with api.client() as c:
        good = c.post("/v1/auth/login", json={"username": "user0001", "password": "correct horse"})
        wrong = c.post("/v1/auth/login", json={"username": "user0001", "password": "nope"})
        nobody = c.post("/v1/auth/login", json={"username": "nobody", "password": "x"})
    assert good.status_code == 200
    assert set(good.json()) >= {"access_token", "refresh_token", "expires_in"}
    assert (wrong.status_code, nobody.status_code) == (401, 401)
    m = api.metrics()
    assert m['auth_login_total{result="ok"}'] == ok0 + 1
    assert m['auth_login_total{result="bad_credentials"}'] == bad0 + 2
    assert m["auth_token_generation_seconds_count"] >= 1

    with api.client() as c:
        refreshed = c.post("/v1/auth/refresh", json={"refresh_token": good.json()["refresh_token"]})
        assert refreshed.status_code == 200
        again = c.post("/v1/auth/refresh", json={"refresh_token": good.json()["refresh_token"]})
        assert again.status_code == 401  # rotated: the old refresh token is spent


@pytest.mark.parametrize("kind", ["garbage", "bad_signature", "expired", "refresh_as_access"])
def test_bad_or_expired_token_is_401(api: ApiStack, kind: str) -> None:
    now = int(time.time())
    claims = {"sub": "1", "typ": "access", "jti": "j", "sid": "s", "iat": now, "exp": now + 60}
    token = {
        "garbage": "not.a.jwt",
        "bad_signature": sign(claims, "some other secret"),
        "expired": sign({**claims, "exp": now - 1}, api.config.jwt_secret),
        "refresh_as_access": sign({**claims, "typ": "refresh"}, api.config.jwt_secret),
    }[kind]
    with api.client(token) as c:
        assert c.get("/v1/conversations").status_code == 401
        assert c.post("/v1/messages", json={}).status_code == 401
    with api.client() as c:
        assert c.get("/v1/conversations").status_code == 401


# ---------------------------------------------------------------- row-level security


def test_rls_hides_foreign_rows_in_sql(api: ApiStack, tokens: dict[str, str]) -> None:
    a, b = api.users["user0001"], api.users["user0002"]
    conv = create_conversation(api, tokens["user0002"], title="b-only")["id"]
    with api.client(tokens["user0002"]) as c:
        assert c.post("/v1/messages", json=message_body(conv, b"secret")).status_code == 202
    app = migrate.app_dsn(api.endpoints.postgres_dsn)
    assert sql(app, "SELECT current_user")[0][0] == "testbed_app"
    for table, column in (("conversations", "id"), ("messages", "conversation_id")):
        query = f"SELECT count(*) FROM {table} WHERE {column} = $1"
        assert sql(app, query, uuid.UUID(conv), user_id=a)[0][0] == 0
        assert sql(app, query, uuid.UUID(conv), user_id=b)[0][0] == 1
        assert sql(app, query, uuid.UUID(conv))[0][0] == 0  # no app.user_id: nothing
    rows = sql(
        app,
        "SELECT count(*) FROM participants WHERE conversation_id = $1",
        uuid.UUID(conv),
        user_id=a,
    )
    assert rows[0][0] == 0
    # Writing into it is refused by the policy too.
    with pytest.raises(Exception, match="row-level security"):
        sql(
            app,
            "INSERT INTO participants (conversation_id, user_id) VALUES ($1, $2)",
            uuid.UUID(conv),
            a,
            user_id=a,
        )


def test_foreign_conversation_is_403_and_counted(api: ApiStack, tokens: dict[str, str]) -> None:
    conv = create_conversation(api, tokens["user0001"], "user0002")["id"]
    before = api.metric("sanctum_security_denied_total")
    with api.client(tokens["user0003"]) as c:
        statuses = [
            c.get(f"/v1/conversations/{conv}").status_code,
            c.patch(
                f"/v1/conversations/{conv}", json={"title": "x"}, headers={"If-Match": "1"}
            ).status_code,
            c.delete(f"/v1/conversations/{conv}", headers={"If-Match": "1"}).status_code,
            c.get(f"/v1/conversations/{conv}/messages").status_code,
            c.post("/v1/messages", json=message_body(conv, b"x")).status_code,
            c.post(
                f"/v1/conversations/{conv}/participants", json={"username": "user0003"}
            ).status_code,
        ]
        listed = [x["id"] for x in c.get("/v1/conversations").json()["conversations"]]
        missing = c.get(f"/v1/conversations/{uuid.uuid4()}").status_code
    assert statuses == [403] * 6
    assert conv not in listed
    assert missing == 404
    assert api.metric("sanctum_security_denied_total") == before + 6


def test_participants_add_remove_and_cache(api: ApiStack, tokens: dict[str, str]) -> None:
    conv = create_conversation(api, tokens["user0001"])["id"]
    with api.client(tokens["user0001"]) as owner, api.client(tokens["user0003"]) as third:
        assert third.post("/v1/messages", json=message_body(conv, b"x")).status_code == 403
        added = owner.post(f"/v1/conversations/{conv}/participants", json={"username": "user0003"})
        assert added.status_code == 201, added.text
        assert third.post("/v1/messages", json=message_body(conv, b"hi")).status_code == 202
        assert third.post("/v1/messages", json=message_body(conv, b"hi")).status_code == 202
        uid = api.users["user0003"]
        assert owner.delete(f"/v1/conversations/{conv}/participants/{uid}").status_code == 204
        assert third.post("/v1/messages", json=message_body(conv, b"x")).status_code == 403
    m = api.metrics()
    assert m["messaging_participant_cache_hits_total"] >= 1
    assert m["messaging_participant_cache_misses_total"] >= 1


def test_get_conversation_answers_x_cache_hit_or_miss(
    api: ApiStack, tokens: dict[str, str]
) -> None:
    conv = create_conversation(api, tokens["user0001"], "user0002")["id"]
    url = f"/v1/conversations/{conv}"
    with api.client(tokens["user0001"]) as owner, api.client(tokens["user0003"]) as third:
        first, second = owner.get(url), owner.get(url)
        foreign = third.get(url)
        uid = api.users["user0002"]
        assert owner.delete(f"{url}/participants/{uid}").status_code == 204
        after_change = owner.get(url)
    assert (first.status_code, first.headers["X-Cache"]) == (200, "miss")
    assert (second.status_code, second.headers["X-Cache"]) == (200, "hit")
    assert (foreign.status_code, foreign.headers["X-Cache"]) == (403, "hit")
    assert (after_change.status_code, after_change.headers["X-Cache"]) == (200, "miss")
    assert after_change.json()["participants"] == [api.users["user0001"]]


# ---------------------------------------------------------------- conversations, messages


def test_stale_version_is_409_and_counted(api: ApiStack, tokens: dict[str, str]) -> None:
    conv = create_conversation(api, tokens["user0001"], "user0002")
    before = api.metric("messaging_conversation_version_conflicts_total")
    url = f"/v1/conversations/{conv['id']}"
    with api.client(tokens["user0001"]) as a, api.client(tokens["user0002"]) as b:
        assert a.patch(url, json={"title": "a"}, headers={"If-Match": "1"}).status_code == 200
        stale = b.patch(url, json={"title": "b"}, headers={"If-Match": "1"})
        assert stale.status_code == 409
        assert stale.json()["current"] == 2
        assert b.delete(url, headers={"If-Match": "1"}).status_code == 409
        assert b.patch(url, json={"title": "b"}).status_code == 428
        assert b.delete(url, headers={"If-Match": '"2"'}).status_code == 204
        assert a.get(url).status_code == 404
    assert api.metric("messaging_conversation_version_conflicts_total") == before + 2


def test_malformed_json_is_400(api: ApiStack, tokens: dict[str, str]) -> None:
    with api.client(tokens["user0001"]) as c:
        headers = {"Content-Type": "application/json"}
        assert c.post("/v1/messages", content=b"{nope", headers=headers).status_code == 400
        assert c.post("/v1/conversations", content=b"[1]", headers=headers).status_code == 400
    with api.client() as c:
        assert c.post("/v1/auth/login", content=b"{", headers=headers).status_code == 400


def test_oversized_payload_is_413_and_counted(api: ApiStack, tokens: dict[str, str]) -> None:
    conv = create_conversation(api, tokens["user0001"])["id"]
    before = api.metric("messaging_payload_rejects_total")
    big = b"x" * (api.config.max_payload_bytes + 1)
    with api.client(tokens["user0001"]) as c:
        assert c.post("/v1/messages", json=message_body(conv, big)).status_code == 413
        exact = c.post("/v1/messages", json=message_body(conv, big[:-1]))
        assert exact.status_code == 202
        huge = message_body(conv, big * 3)  # beyond the body limit: refused before parsing
        assert c.post("/v1/messages", json=huge).status_code == 413
    assert api.metric("messaging_payload_rejects_total") == before + 2


def test_sha256_mismatch_is_400(api: ApiStack, tokens: dict[str, str]) -> None:
    conv = create_conversation(api, tokens["user0001"])["id"]
    body = {**message_body(conv, b"payload"), "sha256": hashlib.sha256(b"other").hexdigest()}
    with api.client(tokens["user0001"]) as c:
        resp = c.post("/v1/messages", json=body)
        assert resp.status_code == 400
        assert "sha256" in resp.json()["message"]
        assert c.post("/v1/messages", json={**body, "ciphertext": "***"}).status_code == 400


def test_message_is_stored_with_its_outbox_row(api: ApiStack, tokens: dict[str, str]) -> None:
    conv = create_conversation(api, tokens["user0001"], "user0002")["id"]
    with api.client(tokens["user0001"]) as c:
        first = c.post("/v1/messages", json=message_body(conv, b"one", "c-1"))
        second = c.post("/v1/messages", json=message_body(conv, b"two", "c-2"))
        again = c.post("/v1/messages", json=message_body(conv, b"one", "c-1"))
    assert (first.status_code, second.status_code, again.status_code) == (202, 202, 202)
    assert [first.json()["seq"], second.json()["seq"]] == [1, 2]
    assert again.json()["message_id"] == first.json()["message_id"]  # idempotent
    rows = sql(
        api.endpoints.postgres_dsn,
        "SELECT m.id, m.seq, m.ciphertext, m.sha256, o.attempts, o.dead"
        " FROM messages m JOIN outbox o ON o.message_id = m.id"
        " WHERE m.conversation_id = $1 ORDER BY m.seq",
        uuid.UUID(conv),
    )
    assert [str(r["id"]) for r in rows] == [first.json()["message_id"], second.json()["message_id"]]
    assert rows[0]["ciphertext"] == b"one"
    assert rows[0]["sha256"] == hashlib.sha256(b"one").hexdigest()
    with api.client(tokens["user0002"]) as c:
        history = c.get(f"/v1/conversations/{conv}/messages", params={"after": 1}).json()
    assert [m["seq"] for m in history["messages"]] == [2]
    assert base64.b64decode(history["messages"][0]["ciphertext"]) == b"two"


# ---------------------------------------------------------------- WebSocket gateway


def test_ws_bad_token_is_rejected(api: ApiStack) -> None:
    for url in (api.ws_url, api.ws_url + "?token=nope"):
        with pytest.raises(InvalidStatus) as err:
            connect(url, open_timeout=5)
        assert err.value.response.status_code == 401


def _deliver(
    api: ApiStack,
    recipients: list[int],
    payload: bytes = b"m",
    message: dict[str, Any] | None = None,
) -> dict[str, Any]:
    message = message or {
        "message_id": str(uuid.uuid4()),
        "conversation_id": str(uuid.uuid4()),
        "sender_id": api.users["user0001"],
        "seq": 1,
        "sha256": hashlib.sha256(payload).hexdigest(),
        "ciphertext": base64.b64encode(payload).decode(),
        "created_at": time.time(),
    }
    with redis.Redis.from_url(api.endpoints.redis_url) as r:
        receivers = r.publish(
            "messaging:deliver", json.dumps({"recipients": recipients, "message": message})
        )
    assert receivers >= 1  # the gateway is subscribed
    return message


def test_deliver_reaches_each_recipient_socket_exactly_once(
    api: ApiStack, tokens: dict[str, str]
) -> None:
    frames0 = api.metric("ws_frame_sent_total")
    with (
        _ws(api, tokens["user0002"]) as b1,
        _ws(api, tokens["user0002"]) as b2,
        _ws(api, tokens["user0003"]) as other,
    ):
        message = _deliver(api, [api.users["user0002"]])
        _deliver(api, [api.users["user0002"]], message=message)  # a consumer's redelivery
        for ws in (b1, b2):
            assert json.loads(ws.recv(timeout=5)) == {"type": "message", **message}
            with pytest.raises(TimeoutError):
                ws.recv(timeout=0.5)  # exactly once
        with pytest.raises(TimeoutError):
            other.recv(timeout=0.1)
    m = api.metrics()
    assert m["ws_frame_sent_total"] >= frames0 + 5  # three pongs, two messages
    assert m["ws_connect_total"] >= 3
    assert m["ws_duplicate_suppressed_total"] >= 1


def test_ws_declines_permessage_deflate(api: ApiStack, tokens: dict[str, str]) -> None:
    """Ciphertext does not compress; deflating each frame once per socket was the API's
    main CPU cost under 64 KiB messages (Test 05), so the offer is declined."""
    with _ws(api, tokens["user0002"]) as ws:
        assert "permessage-deflate" in ws.request.headers.get("Sec-WebSocket-Extensions", "")
        assert ws.response.headers.get("Sec-WebSocket-Extensions") is None


def test_ws_close_is_counted_and_pings_are_answered(api: ApiStack, tokens: dict[str, str]) -> None:
    closed0 = api.metric('ws_close_total{code="1000"}')
    with _ws(api, tokens["user0001"]) as ws:
        time.sleep(api.config.ws_heartbeat_s * 1.6)  # the client library answers the pings
        ws.send(json.dumps({"type": "ping"}))
        assert json.loads(ws.recv(timeout=5)) == {"type": "pong"}
    _wait_metric(api, 'ws_close_total{code="1000"}', closed0 + 1, 5)


def test_ws_without_pong_is_terminated(api: ApiStack, tokens: dict[str, str]) -> None:
    before = api.metric("ws_heartbeat_terminate_total")
    with _raw_ws(api, tokens["user0001"]):
        _wait_metric(api, "ws_heartbeat_terminate_total", before + 1, 3 * api.config.ws_heartbeat_s)


def _ping_frame(payload: bytes) -> bytes:
    """A masked client ping frame (all-zero mask key), payload < 126 bytes."""
    return bytes([0x89, 0x80 | len(payload)]) + b"\0\0\0\0" + payload


def test_a_client_that_pings_on_its_own_is_not_terminated(
    api: ApiStack, tokens: dict[str, str]
) -> None:
    """The heartbeat timeout counts any frame from the client: a peer that never answers
    the server's pings but sends its own more often than the timeout (Test 14's
    listener pings on its own heartbeat) outlives two timeouts and still gets a pong."""
    before = api.metric("ws_heartbeat_terminate_total")
    every_s = api.config.heartbeat_timeout_s / 3
    with _raw_ws(api, tokens["user0001"]) as sock:
        for _ in range(6):  # two timeouts of the client's own cadence
            sock.sendall(_ping_frame(b"hb"))
            time.sleep(every_s)
        sock.sendall(_frame(b'{"type":"ping"}'))
        seen = b""
        while b"pong" not in seen:  # the JSON pong; protocol pongs carry b"hb"
            chunk = sock.recv(4096)
            assert chunk, "the server closed a socket whose client kept pinging"
            seen += chunk
    assert api.metric("ws_heartbeat_terminate_total") == before


def test_slow_consumer_is_counted_then_closed_1013(api: ApiStack, tokens: dict[str, str]) -> None:
    overload0 = api.metric("ws_overload_total")
    closed0 = api.metric('ws_close_total{code="1013"}')
    user = api.users["user0003"]
    with _raw_ws(api, tokens["user0003"]):
        deadline = time.monotonic() + 60  # catches a socket never closed, not a slow host
        while api.metric('ws_close_total{code="1013"}') < closed0 + 1:
            assert time.monotonic() < deadline, "the overloaded socket was not closed"
            for _ in range(20):
                _deliver(api, [user], os.urandom(32 * 1024))
            time.sleep(0.05)
    assert api.metric("ws_overload_total") > overload0


# ---------------------------------------------------------------- outage (keep last)


def test_postgres_down_is_503_then_recovers(api: ApiStack, tokens: dict[str, str]) -> None:
    control = ProxyControl(api.endpoints.postgres_proxy_control)
    with api.client(tokens["user0001"]) as c, control as ctl:
        assert c.get("/v1/conversations").status_code == 200
        ctl.cut()
        try:
            ready = c.get("/readyz")
            assert ready.status_code == 503
            assert ready.json()["down"] == ["postgres"]
            for _ in range(api.config.breaker_failures + 1):
                down = c.get("/v1/conversations")
                assert down.status_code == 503
                assert down.json()["error"] == "unavailable"
                assert "Traceback" not in down.text
            assert "circuit breaker open" in down.json()["message"]
            assert c.get("/healthz").status_code == 200
        finally:
            ctl.restore()
        deadline = time.monotonic() + 15
        while c.get("/v1/conversations").status_code != 200:
            assert time.monotonic() < deadline, "API did not recover after PostgreSQL returned"
            time.sleep(0.1)
        assert c.get("/readyz").status_code == 200
    m = api.metrics()
    for state in ("open", "half_open", "closed"):
        key = f'storage_circuit_breaker_transitions_total{{adapter="pg",state="{state}"}}'
        assert m.get(key, 0) >= 1, key
    assert m['storage_errors_total{type="ConnectionError"}'] >= 1
    assert m['storage_errors_total{type="BreakerOpen"}'] >= 1
