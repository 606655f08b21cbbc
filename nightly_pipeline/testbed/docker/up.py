"""``nightly stack up --docker``: the platform in containers, its endpoints printed as
JSON, until Ctrl-C or SIGTERM; then every container, the network and a private daemon
removed. The signal handlers and the wait are ``testbed.stack.up``'s."""

from __future__ import annotations

import sys
import threading
from pathlib import Path
from typing import Any, TextIO

from nightly_pipeline.suite.errors import ConfigurationError, InfrastructureError
from nightly_pipeline.testbed.docker.on_demand import DockerOnDemand
from nightly_pipeline.testbed.embedded import PlatformSettings
from nightly_pipeline.testbed.stack.up import serve_until_stopped


def docker_up_main(
    run_dir: Path,
    settings: PlatformSettings,
    *,
    docker_host: str | None = None,
    search_path: str | None = None,
    out: TextIO | None = None,
    stop_event: threading.Event | None = None,
) -> int:
    """0 after ``stop_event``, 128 + the signal after a signal, 1 when the start failed."""

    def shown(on_demand: DockerOnDemand) -> tuple[dict[str, Any], float]:
        platform = on_demand.platform()
        target = platform.target()
        return {
            "base_url": target.base_url,
            "ws_url": target.ws_url,
            "metrics_urls": dict(target.metrics_urls),
            "link_controls": platform.link_controls(),
            "datastores": platform.datastores(),
            "containers": {n: platform.container(n).name for n in platform.process_names()},
            "network": platform.network_name,
            "image": platform.config.image,
            "users": f"{min(target.users)} .. {max(target.users)}",
            "password": target.password,
        }, platform.start_seconds

    return serve_until_stopped(
        lambda: DockerOnDemand(run_dir, settings, docker_host, search_path),
        shown,
        what="docker platform",
        failed="stack up --docker failed",
        failures=(ConfigurationError, InfrastructureError),
        out=out or sys.stdout,
        stop_event=stop_event or threading.Event(),
    )
