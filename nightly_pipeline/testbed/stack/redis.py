"""Redis for the embedded stack: no persistence, loopback only, readiness by PING."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from nightly_pipeline.testbed.stack.binaries import RedisBinary
from nightly_pipeline.testbed.stack.probes import HOST, redis_ping
from nightly_pipeline.testbed.stack.procs import ManagedProcess


@dataclass(frozen=True)
class RedisSettings:
    port: int
    maxclients: int = 10000
    ready_timeout_s: float = 30.0
    stop_timeout_s: float = 10.0


class RedisServer:
    def __init__(self, binary: RedisBinary, home: Path, settings: RedisSettings, log_dir: Path):
        self.binary = binary
        self.home = home
        self.settings = settings
        self.log_dir = log_dir
        self.process: ManagedProcess | None = None

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.settings.port}/0"

    def start(self) -> None:
        """Spawn redis-server; ``wait_ready()`` then waits for its PING."""
        self.home.mkdir(parents=True, exist_ok=True)
        conf = self.home / "redis.conf"
        conf.write_text(
            "\n".join(
                [
                    f"bind {HOST}",
                    f"port {self.settings.port}",
                    "protected-mode no",
                    "daemonize no",
                    'save ""',
                    "appendonly no",
                    f"dir {self.home}",
                    'logfile ""',
                    f"maxclients {self.settings.maxclients}",
                    "",
                ]
            )
        )
        self.process = ManagedProcess(
            "redis", [str(self.binary.path), str(conf)], self.log_dir / "redis.log", cwd=self.home
        )
        self.process.start()

    def wait_ready(self) -> None:
        assert self.process is not None
        self.process.wait_ready(
            lambda: redis_ping(self.settings.port), self.settings.ready_timeout_s, "PING answered"
        )

    def stop(self) -> list[int]:
        return self.process.stop(self.settings.stop_timeout_s) if self.process else []
