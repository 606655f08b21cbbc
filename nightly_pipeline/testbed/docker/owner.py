"""Labels that make every container and network of a Docker platform findable and
reapable: the run id, and the owner process as host + pid + create time (a pid alone may
be reused). ``reap_dead_platforms`` removes, at the next start, what a dead owner left
(``kill -9``, a crash): the Docker counterpart of ``testbed.stack.reaper``. Images are
not labelled per run: they are a cache, kept on purpose."""

from __future__ import annotations

import logging
import os
import socket
from typing import Any

import docker
import docker.errors

from nightly_pipeline.testbed.stack.owner import identity, is_same_process

log = logging.getLogger(__name__)
PREFIX = "org.nightly-pipeline"
RUN, OWNER_PID, OWNER_START, OWNER_HOST = (
    f"{PREFIX}.run",
    f"{PREFIX}.owner-pid",
    f"{PREFIX}.owner-start",
    f"{PREFIX}.owner-host",
)


def owner_labels(run_id: str) -> dict[str, str]:
    """The labels of everything this process creates for run ``run_id``."""
    me = identity(os.getpid())
    return {
        RUN: run_id,
        OWNER_PID: str(me["pid"]),
        OWNER_START: repr(me["create_time"]),
        OWNER_HOST: socket.gethostname(),
    }


def owner_alive(labels: dict[str, Any]) -> bool:
    """Whether the labelled owner still runs; an owner on another host counts as alive
    (this host cannot tell, so never reaps it)."""
    if labels.get(OWNER_HOST) != socket.gethostname():
        return True
    return is_same_process({"pid": labels.get(OWNER_PID), "create_time": labels.get(OWNER_START)})


def reap_dead_platforms(client: docker.DockerClient) -> list[str]:
    """Remove every labelled container, then network, whose owner is dead; one line each."""
    lines = []
    for container in client.containers.list(all=True, filters={"label": OWNER_PID}):
        if not owner_alive(container.labels):
            try:
                container.remove(force=True, v=True)
                lines.append(
                    f"reaped container {container.name} of dead run {container.labels.get(RUN)}"
                )
            except docker.errors.NotFound:
                pass
    for network in client.networks.list(filters={"label": OWNER_PID}):
        labels = network.attrs.get("Labels") or {}
        if not owner_alive(labels):
            try:
                network.remove()
                lines.append(f"reaped network {network.name} of dead run {labels.get(RUN)}")
            except docker.errors.NotFound:
                pass
    for line in lines:
        log.warning("%s", line)
    return lines


def run_resources(client: docker.DockerClient, run_id: str) -> tuple[list[str], list[str]]:
    """Names of the containers and networks labelled with ``run_id`` (tests: none left)."""
    where = {"label": f"{RUN}={run_id}"}
    containers = [c.name for c in client.containers.list(all=True, filters=where)]
    networks = [n.name for n in client.networks.list(filters=where)]
    return containers, networks
