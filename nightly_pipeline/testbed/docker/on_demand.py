"""The Docker platform for one run, started on first use (as ``testbed.on_demand`` does
for the embedded one): a daemon (the user's, at ``DOCKER_HOST`` or the default socket;
else a private dockerd when this process is root and has one), the hermetic image
(built once per input hash), the platform; ``close()`` stops all it started, in reverse.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from pathlib import Path

import nightly_pipeline
from nightly_pipeline.suite.errors import ConfigurationError, InfrastructureError
from nightly_pipeline.testbed.docker.daemon import (
    Daemon,
    DockerUnavailableError,
    find_dockerd,
    private_daemon,
    reachable_daemon,
)
from nightly_pipeline.testbed.docker.image import ensure_image
from nightly_pipeline.testbed.docker.platform import (
    DockerPlatform,
    DockerPlatformConfig,
    docker_platform,
)
from nightly_pipeline.testbed.embedded import PlatformSettings
from nightly_pipeline.testbed.on_demand import StartedOnFirstUse

log = logging.getLogger(__name__)
PROJECT_ROOT = Path(nightly_pipeline.__file__).resolve().parent.parent


class DockerStartError(InfrastructureError):
    """The Docker platform did not start; everything it had started is stopped."""


class DockerNotAvailableError(ConfigurationError):
    """No daemon to run on; the message names the fix."""


def find_daemon(
    running: contextlib.ExitStack, docker_host: str | None, search_path: str | None
) -> Daemon:
    """The user's daemon, else a private one entered into ``running``."""
    daemon = reachable_daemon(docker_host)
    if daemon is not None:
        return daemon
    dockerd = find_dockerd(search_path)
    if dockerd is None:
        raise DockerNotAvailableError(
            "no Docker daemon answers (DOCKER_HOST, /var/run/docker.sock) and no dockerd to "
            "start: `apt-get install docker.io` (make system-deps) or set DOCKER_HOST"
        )
    try:
        return running.enter_context(private_daemon(dockerd))
    except DockerUnavailableError as exc:
        raise DockerNotAvailableError(str(exc)) from exc


class DockerOnDemand(StartedOnFirstUse[DockerPlatform]):
    def __init__(
        self,
        run_dir: Path,
        settings: PlatformSettings,
        docker_host: str | None = None,
        search_path: str | None = None,
    ) -> None:
        super().__init__()
        self.run_dir = run_dir
        self.settings = settings
        self.docker_host = docker_host
        self.search_path = search_path

    def _start(self) -> DockerPlatform:
        run_id = self.run_dir.name + ("" if self.attempts == 1 else f"-a{self.attempts}")
        try:
            daemon = find_daemon(self._running, self.docker_host, self.search_path)
            client = daemon.client()
            self._running.callback(client.close)
            image = ensure_image(client, sys.executable, PROJECT_ROOT)
            log.info(
                "image %s (%s in %.1f s)",
                image.tag,
                "built" if image.built else "cached",
                image.seconds,
            )
            config = DockerPlatformConfig(run_id, self.run_dir, image.tag, self.settings)
            return self._running.enter_context(docker_platform(client, config))
        except ConfigurationError:
            self.close()
            raise
        except Exception as exc:
            self.close()
            raise DockerStartError(
                f"the Docker platform did not start (attempt {self.attempts}; container logs "
                f"in {self.run_dir / 'logs'}; everything it had started is removed): {exc}"
            ) from exc
