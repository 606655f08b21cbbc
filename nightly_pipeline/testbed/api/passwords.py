"""The API's password checks: scrypt on threads of their own, every one warmed at start.

Each hash takes one block of ``128 * r * n`` bytes (1 MiB at the ci cost). The API pins
glibc's mmap threshold just above it (``__main__``, nightly_pipeline/heap.py), so the
block comes from the hashing thread's arena and is reused login after login instead of
being mapped and faulted in each time (+20-40 % a login). The price is that block kept
once per thread: taken during a run, as the first busy moment woke each thread, it read
as a step of RSS in the memory checks (Test 06 failed on CI on +4.3 MB). So ``warm()``
makes every thread hash once, all at the same time, before the API serves: the memory is
there from the start, at the cost of ``threads`` hashes when the API starts.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import threading
from concurrent.futures import ThreadPoolExecutor

from nightly_pipeline.testbed.seed import hash_password, verify_password

DEFAULT_THREADS = min(32, (os.cpu_count() or 1) + 4)
"""asyncio's default executor's size, which the API's logins used before."""
WARM_TIMEOUT_S = 60.0


class PasswordChecker:
    """``await check(password, encoded)`` on a pool of ``threads`` threads; an unknown user
    (``encoded=None``) costs the same as a known one: a dummy hash at the platform's cost."""

    def __init__(self, cost_n: int, threads: int = DEFAULT_THREADS) -> None:
        self.threads = threads
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="password")
        self._dummy_hash = hash_password(secrets.token_hex(16), cost_n)

    def warm(self, timeout_s: float = WARM_TIMEOUT_S) -> None:
        """Hash once on every thread of the pool. The barrier holds each task until all
        ``threads`` have started, so the pool cannot hand two of them to one thread."""
        together = threading.Barrier(self.threads, timeout=timeout_s)

        def hash_once() -> None:
            together.wait()
            verify_password("warm-up", self._dummy_hash)

        for future in [self._pool.submit(hash_once) for _ in range(self.threads)]:
            future.result(timeout_s)

    async def check(self, password: str, encoded: str | None) -> bool:
        loop = asyncio.get_running_loop()
        ok = await loop.run_in_executor(
            self._pool, verify_password, password, encoded or self._dummy_hash
        )
        return ok and encoded is not None

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
