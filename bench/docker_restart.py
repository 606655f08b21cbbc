"""The consumer's restart after a SIGKILL (Test 08's fault) on the embedded platform and
on the Docker platform, measured in the same run; and what the image's bytecode saves.

    . .venv/bin/activate && python bench/docker_restart.py [--rounds 5] [--cpus 0.25]

Each round kills the consumer (SIGKILL) and times ``restart("consumer")`` (start again,
until its metrics answer) on each platform; prints each, the medians and their ratio.
``--cpus`` then limits the Docker consumer's CPU (``docker update``: a loaded host's
share) and times the restarts again. Last, inside the consumer's container (same CPU
limit), the consumer's imports from the image's bytecode against the same imports
compiled from source (``-X pycache_prefix`` at an empty directory: what every start did
before the image carried its ``.pyc``), and their ratio. Daemon: the user's
(``$DOCKER_HOST`` or the default socket), else a private dockerd when root.
Asserts nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from nightly_pipeline.testbed.docker.image import ensure_image
from nightly_pipeline.testbed.docker.on_demand import PROJECT_ROOT, find_daemon
from nightly_pipeline.testbed.docker.platform import (
    PY,
    DockerPlatformConfig,
    docker_platform,
)
from nightly_pipeline.testbed.embedded import PlatformSettings, embedded_platform
from nightly_pipeline.testbed.stack import StackConfig

SETTINGS = PlatformSettings(users=10, password_hash_n=2**10)
IMPORT = "import nightly_pipeline.testbed.consumer.__main__"


def kill_and_restart(platform: Any, rounds: int) -> list[float]:
    """Seconds of each ``restart`` after a SIGKILL (the kill's own time not counted)."""
    times = []
    for _ in range(rounds):
        platform.signal("consumer", signal.SIGKILL)
        for _ in range(500):  # bounded: 10 s
            if not platform.is_running("consumer"):
                break
            time.sleep(0.02)
        t0 = time.monotonic()
        platform.restart("consumer")
        times.append(time.monotonic() - t0)
    return times


def import_seconds(container: Any, argv: list[str], rounds: int) -> float:
    """Median seconds of a fresh interpreter importing the consumer in ``container``."""
    times = []
    for _ in range(rounds):
        t0 = time.monotonic()
        code, out = container.exec_run(argv)
        times.append(time.monotonic() - t0)
        if code != 0:
            raise RuntimeError(out.decode(errors="replace"))
    return statistics.median(times)


def show(label: str, times: list[float]) -> float:
    median = statistics.median(times)
    print(f"{label}: " + ", ".join(f"{t:.2f}" for t in times) + f" s; median {median:.2f} s")
    return median


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--cpus", type=float, default=0.25)
    args = parser.parse_args()
    with contextlib.ExitStack() as running, tempfile.TemporaryDirectory() as tmp:
        daemon = find_daemon(running, os.environ.get("DOCKER_HOST"), os.environ.get("PATH"))
        client = daemon.client()
        running.callback(client.close)
        image = ensure_image(client, sys.executable, PROJECT_ROOT)
        stack = StackConfig(run_dir=Path(tmp) / "embedded", search_path=os.environ.get("PATH"))
        with embedded_platform(stack, SETTINGS) as platform:
            embedded = show("embedded restart", kill_and_restart(platform, args.rounds))
        config = DockerPlatformConfig(
            f"bench-{os.getpid()}", Path(tmp) / "docker", image.tag, SETTINGS
        )
        with docker_platform(client, config) as platform:
            docker = show("docker restart", kill_and_restart(platform, args.rounds))
            print(f"docker/embedded restart = {docker / embedded:.2f}")
            platform.set_limits("consumer", args.cpus, 0)
            limited = show(
                f"docker restart at {args.cpus:g} CPU",
                kill_and_restart(platform, args.rounds),
            )
            print(f"at {args.cpus:g} CPU / unlimited = {limited / docker:.2f}")
            container = platform.container("consumer")
            compiled = import_seconds(container, [PY, "-c", IMPORT], args.rounds)
            source = import_seconds(
                container, [PY, "-X", "pycache_prefix=/tmp/no-bytecode", "-c", IMPORT], args.rounds
            )
            print(
                f"consumer imports at {args.cpus:g} CPU: from the image's bytecode "
                f"{compiled:.2f} s, compiled from source {source:.2f} s; "
                f"source/bytecode = {source / compiled:.2f}"
            )


if __name__ == "__main__":
    main()
