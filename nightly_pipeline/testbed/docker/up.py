"""``nightly stack up --docker``: the platform in containers, its endpoints printed as
JSON, until Ctrl-C or SIGTERM; then every container, the network and a private daemon
removed. The signal handlers are this entry point's (as ``testbed.stack.up``)."""

from __future__ import annotations

import json
import signal
import sys
import threading
from pathlib import Path
from typing import TextIO

from nightly_pipeline.suite.errors import ConfigurationError, InfrastructureError
from nightly_pipeline.testbed.docker.on_demand import DockerOnDemand
from nightly_pipeline.testbed.embedded import PlatformSettings


class _Stop(BaseException):
    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


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
    out = out or sys.stdout
    stop_event = stop_event or threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        stop_event.set()
        raise _Stop(signum)

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with DockerOnDemand(run_dir, settings, docker_host, search_path) as on_demand:
            platform = on_demand.platform()
            target = platform.target()
            shown = {
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
            }
            print(json.dumps(shown, indent=2), file=out, flush=True)
            print(
                f"docker platform up in {platform.start_seconds:.1f} s; Ctrl-C or SIGTERM to stop",
                file=sys.stderr,
                flush=True,
            )
            while not stop_event.wait(1.0):
                pass
        return 0
    except _Stop as stop:
        print(f"docker platform down (signal {stop.signum})", file=sys.stderr)
        return 128 + stop.signum
    except (ConfigurationError, InfrastructureError) as exc:
        print(f"stack up --docker failed: {exc}", file=sys.stderr)
        return 1
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)
