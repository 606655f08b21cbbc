"""Killing PostgreSQL or Redis for real (SIGKILL to the server's whole process group) and
starting it again on the same port and data, as Test 11 does, through the stack's process
control; and the HTTP probes that judge an API while it happens.
"""

from __future__ import annotations

import asyncio
import signal
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil

from nightly_pipeline.testbed.stack import EmbeddedStack
from tests.testbed.pipeline_fixtures import wait_until


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def kill(launcher: EmbeddedStack, name: str) -> None:
    """kill -9 ``name``'s whole process group; return once it is gone."""
    launcher.signal(name, signal.SIGKILL)
    wait_until(lambda: not launcher.is_running(name), 10, f"{name} gone")


def kill_postgres(launcher: EmbeddedStack) -> None:
    """The postmaster and every backend: acknowledged commits must survive."""
    kill(launcher, "postgres")


def start_postgres(launcher: EmbeddedStack) -> None:
    """Same data directory and port (crash recovery); returns once ``SELECT 1`` answers."""
    launcher.restart("postgres")


def kill_redis(launcher: EmbeddedStack, *, lose_data: bool = False) -> None:
    """kill -9 Redis; ``lose_data``: also delete its append-only file, so that it comes
    back empty (a Redis without persistence, or whose disk was lost)."""
    kill(launcher, "redis")
    if lose_data:
        for aof in (launcher.config.run_dir / "redis").glob("*.aof"):
            aof.unlink()


def start_redis(launcher: EmbeddedStack) -> None:
    launcher.restart("redis")


@dataclass
class Answers:
    """Statuses (``"error:<type>"`` for no HTTP answer) and the bodies of the 5xx."""

    statuses: Counter[str] = field(default_factory=Counter)
    bodies: list[dict] = field(default_factory=list)

    def only(self, *allowed: int) -> bool:
        return set(self.statuses) <= {str(a) for a in allowed}


async def burst_async(
    base_url: str, token: str | None, path: str, n: int, timeout_s: float
) -> Answers:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    answers = Answers()
    limits = httpx.Limits(max_connections=n)
    async with httpx.AsyncClient(
        base_url=base_url, headers=headers, timeout=timeout_s, limits=limits, trust_env=False
    ) as client:

        async def one() -> None:
            try:
                resp = await client.get(path)
            except httpx.HTTPError as exc:
                answers.statuses[f"error:{type(exc).__name__}"] += 1
                return
            answers.statuses[str(resp.status_code)] += 1
            if resp.status_code >= 500:
                answers.bodies.append(resp.json())

        await asyncio.gather(*(one() for _ in range(n)))
    return answers


def burst(
    base_url: str, token: str | None, path: str, n: int = 40, timeout_s: float = 30.0
) -> Answers:
    """``n`` concurrent GETs of ``path``; what came back (never raises on errors)."""
    return asyncio.run(burst_async(base_url, token, path, n, timeout_s))


LOG_PROBLEMS = ("Traceback", "RuntimeWarning", "was never awaited", "never retrieved")


def log_problems(path: Path) -> list[str]:
    """Lines of a process log showing an unhandled error or a coroutine never awaited."""
    lines = path.read_text(errors="replace").splitlines()
    return [line for line in lines if any(p in line for p in LOG_PROBLEMS)]
