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
    pg_pool_timeout_s: float = 2.0
    max_payload_bytes: int = 128 * 1024
    stream: str = "messaging:stream"
    consumer_group: str = "delivery"
    dispatch_batch: int = 200
    dispatch_max_attempts: int = 8
    consumer_reclaim_idle_ms: int = 5_000
    ws_heartbeat_s: float = 30.0
    ws_send_queue: int = 1_000
    breaker_failures: int = 5
    breaker_reset_s: float = 5.0
    row_level_security: bool = True
    """Fault knob: ``False`` disables row-level security on the messaging tables at start,
    a platform that serves other users' conversations (Test 02 must catch it)."""
    cache_invalidation: bool = True
    """Fault knob: ``False`` makes a membership cache that never invalidates (no local
    drop, no Redis delete, no Pub/Sub), the broken target Test 03 must catch."""
    leak_bytes_per_message: int = 0
    """Fault knob: the API keeps this many bytes for good per accepted message, a leak
    the suite's memory checks (Tests 01, 05) must catch."""
    version: str = "testbed-0.1.0"

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def load(cls, path: Path) -> TestbedConfig:
        return cls(**json.loads(Path(path).read_text()))
