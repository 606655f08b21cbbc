"""Start-up of the Docker platform against the embedded one, measured in the same run.

    . .venv/bin/activate && python bench/docker_startup.py [--rounds 3]

Each round starts and stops the embedded platform (``embedded_platform``) and then the
Docker platform (``docker_platform``: seven containers on a network of their own) from
the same interpreter and project tree, timing from the call to a platform whose API, workers
and proxies all answer; prints each, the medians and their ratio. The daemon (the user's,
at ``$DOCKER_HOST`` or the default socket, else a private dockerd when root) and the image
(built once per input hash) are set up before the rounds, timed on their own lines.
Asserts nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from nightly_pipeline.testbed.docker.image import ensure_image
from nightly_pipeline.testbed.docker.on_demand import PROJECT_ROOT, find_daemon
from nightly_pipeline.testbed.docker.platform import DockerPlatformConfig, docker_platform
from nightly_pipeline.testbed.embedded import PlatformSettings, embedded_platform
from nightly_pipeline.testbed.stack import StackConfig

SETTINGS = PlatformSettings(users=100, password_hash_n=2**10)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with contextlib.ExitStack() as running, tempfile.TemporaryDirectory() as tmp:
        t0 = time.monotonic()
        daemon = find_daemon(running, os.environ.get("DOCKER_HOST"), os.environ.get("PATH"))
        print(f"daemon {daemon.base_url} ready in {time.monotonic() - t0:.1f} s")
        client = daemon.client()
        running.callback(client.close)
        image = ensure_image(client, sys.executable, PROJECT_ROOT)
        how = "built" if image.built else "cached"
        print(
            f"image {image.tag} {how} in {image.seconds:.1f} s ({image.tar_bytes / 1e6:.0f} MB tar)"
        )
        embedded, docker = [], []
        for i in range(args.rounds):
            t0 = time.monotonic()
            stack = StackConfig(
                run_dir=Path(tmp) / f"embedded-{i}", search_path=os.environ.get("PATH")
            )
            with embedded_platform(stack, SETTINGS):
                embedded.append(time.monotonic() - t0)
            t0 = time.monotonic()
            config = DockerPlatformConfig(
                f"bench-{os.getpid()}-{i}", Path(tmp) / f"docker-{i}", image.tag, SETTINGS
            )
            with docker_platform(client, config):
                docker.append(time.monotonic() - t0)
            print(f"round {i + 1}: embedded {embedded[-1]:.2f} s, docker {docker[-1]:.2f} s")
        e, d = statistics.median(embedded), statistics.median(docker)
        print(
            f"median start-up: embedded {e:.2f} s, docker {d:.2f} s; docker/embedded = {d / e:.2f}"
        )


if __name__ == "__main__":
    main()
