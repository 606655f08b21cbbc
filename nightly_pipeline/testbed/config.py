"""The testbed's configuration: one JSON file the launcher writes and every process reads."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass(frozen=True)
class TestbedConfig:
    __test__ = False  # not a pytest class

    pg_dsn: str  # as the non-superuser app role (RLS applies)
    redis_url: str
    http_host: str = "127.0.0.1"
    http_port: int = 0
    jwt_secret: str = "nightly-testbed-secret"
    access_token_ttl_s: int = 900
    refresh_token_ttl_s: int = 86_400
    password_hash_n: int = 2**14  # scrypt cost: realistic (~30-50 ms), configurable
    pg_pool_size: int = 20
    pg_pool_timeout_s: float | None = 2.0
    """The API's wait for a pooled PostgreSQL connection; ``pg_command_timeout_s`` bounds
    each statement. Fault knob: ``None`` waits without bound for both (no acquire or
    statement timeout), a pool whose exhaustion Test 10 must catch (no
    ``storage_errors_total{type="TimeoutError"}``, no breaker transition)."""
    pg_command_timeout_s: float = 5.0
    http_request_timeout_s: float | None = 10.0
    """Every HTTP answer but the WebSocket upgrade within this (else 503 ``timeout``), well
    under a load client's 30 s: a request never hangs on a dependency."""
    max_payload_bytes: int = 128 * 1024
    stream: str = "messaging:stream"
    consumer_group: str = "delivery"
    dispatch_batch: int = 200
    dispatch_max_attempts: int = 8
    consumer_reclaim_idle_ms: int = 5_000
    outbox_redeliver_after_s: float = 60.0
    """A dispatched outbox row stays until the consumer delivered its message; one not
    delivered after max(this, the message's age) is dispatched again (a stream entry lost
    in a way the dispatcher could not see). A Redis that lost its data is replayed at once."""
    ws_heartbeat_s: float = 30.0
    ws_heartbeat_timeout_s: float | None = None
    """A socket with no frame from its client (a pong, a ping, a text frame) for this long
    is terminated (close 1001, ``ws_heartbeat_terminate_total``); ``None``: 1.5 ×
    ``ws_heartbeat_s`` (``heartbeat_timeout_s``). Fault knob: a timeout shorter than the
    interval at which a healthy client's frames arrive (its own pings, or the pongs to the
    server's pings) terminates healthy sockets; Test 14's disconnect and heartbeat
    checks must catch it."""
    ws_send_queue: int = 1_000
    breaker_failures: int = 5
    breaker_reset_s: float = 5.0
    storage_breaker: bool = True
    """Fault knob: ``False`` removes the API's circuit breakers (PostgreSQL, Redis, the
    probes): they never open, so every request waits on a failing dependency; Test 10's
    blocking breaker checks must catch it."""
    exit_on_db_loss: bool = False
    """Fault knob: ``True`` makes an API that exits (code 70) at the first sign that
    PostgreSQL went away (a refused or broken connection), instead of answering 503;
    Test 11's crash / same-pid / 503-only checks must catch it."""
    reclaim_pending: bool = True
    """Fault knob: ``False`` makes a consumer that never takes over pending entries (no
    ``XAUTOCLAIM``, no reading a previous process's PEL): what a killed consumer had read
    stays pending forever; Test 08's PEL-reclaim and loss checks must catch it."""
    ack_on_read: bool = False
    """Fault knob: ``True`` makes an at-most-once consumer that reads with ``XREADGROUP
    … NOACK`` (acknowledged as read, before delivering): its pending list stays empty,
    and a kill loses the batch it was delivering (until the outbox's redelivery); Test
    08's pending-at-the-kill check must catch it."""
    dlq_on_redis_error: bool = True
    """Fault knob: ``False`` makes a dispatcher that deletes the outbox rows whose ``XADD``
    failed instead of keeping them for a retry (no DLQ): a Redis partition loses messages
    for good; Test 09's DLQ and zero-permanent-loss checks must catch it."""
    row_level_security: bool = True
    """Fault knob: ``False`` disables row-level security on the messaging tables at start,
    a platform that serves other users' conversations (Test 02 must catch it)."""
    access_control: bool = True
    """Fault knob: ``False`` makes a platform with no access control at all: row-level
    security off (as ``row_level_security``) and no membership check before a post, so
    no foreign read or post is ever refused; Test 12's blocking ``foreign_access_denied``
    (ACL denials > 0) and ``no_foreign_access_allowed`` checks must catch it."""
    cache_invalidation: bool = True
    """Fault knob: ``False`` makes a membership cache that never invalidates (no local
    drop, no Redis delete, no Pub/Sub), the broken target Test 03 must catch."""
    ws_misroute_every: int = 0
    """Fault knob: every N-th message the gateway delivers also goes to one socket of a
    user who is not among its recipients (a fan-out to a wrong conversation); 0: never.
    Test 12's blocking ``cross_conversation_leaks`` check must catch it."""
    ws_duplicate_every: int = 0
    """Fault knob: every N-th message the gateway delivers goes twice to each of its
    recipients' sockets (past its own de-duplication); 0: never. The blocking
    ``each_message_delivered_once`` checks (Tests 01, 04) must catch it."""
    ws_corrupt_every: int = 0
    """Fault knob: every N-th message the gateway delivers has one byte of its
    ciphertext flipped (its ``sha256`` field left as it was); 0: never. The blocking
    ``zero_corrupted_messages`` checks (Tests 01, 05) must catch it."""
    stream_writable: bool = True
    """Fault knob: ``False`` makes a dispatcher whose stream key holds a string, not a
    stream: it writes to ``<stream>:not-a-stream``, which it sets to a string with every
    batch, so Redis refuses every ``XADD`` (WRONGTYPE) and each row dies after
    ``dispatch_max_attempts`` attempts; Test 01's ``zero_dead_letters`` must catch it."""
    optimistic_locking: bool = True
    """Fault knob: ``False`` makes an API that ignores ``If-Match`` on PATCH/DELETE (no
    428, no 409: the last write wins); Test 02's ``stale_versions_get_409`` must catch it."""
    leak_bytes_per_message: int = 0
    """Fault knob: the API keeps this many bytes for good per accepted message, a leak
    the suite's memory checks (Tests 01, 05) must catch."""
    leak_bytes_per_login: int = 0
    """Fault knob: the API keeps this many bytes for good per successful login, a leak
    Test 06's memory check must catch (it posts no message)."""
    next_migration: str = "0003_message_size"
    """The schema change this platform ships next (``testbed/next_migrations/``), which
    Test 13 applies under load and rolls back; the launcher never applies it. Fault knob:
    ``"0003_message_size_unsafe"`` ships the same change written unsafely (no
    ``lock_timeout``, one-statement backfill, a plain ``CREATE INDEX`` that blocks every
    write to messages while it builds), or ``"0003_message_size_plain_index"`` (only the
    plain ``CREATE INDEX``); Test 13's p95 check must catch both and name the statement."""
    version: str = "testbed-0.1.0"

    @property
    def heartbeat_timeout_s(self) -> float:
        """How long a WebSocket may stay silent before the gateway terminates it."""
        if self.ws_heartbeat_timeout_s is not None:
            return self.ws_heartbeat_timeout_s
        return 1.5 * self.ws_heartbeat_s

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def load(cls, path: Path) -> TestbedConfig:
        return cls(**json.loads(Path(path).read_text()))
