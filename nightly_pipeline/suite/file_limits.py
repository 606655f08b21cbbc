"""Open-file limits against the sockets a test will open: checked before any socket
opens, so 1,000 WebSockets fail with the limit and the fix, not with ``EMFILE`` halfway."""

from __future__ import annotations

import resource
from collections.abc import Mapping

import psutil

from nightly_pipeline.suite.errors import ConfigurationError

FILES_TO_SPARE = 64  # the interpreter, its pipes, an HTTP client or two


class FileLimitError(ConfigurationError):
    """More sockets than a process may open; the message names the limit and the fix."""


def _fix(needed: int) -> str:
    return (
        f"raise it to at least {needed} (`ulimit -n {needed}` in the shell that starts it,"
        " LimitNOFILE= for a service, --ulimit nofile= for a container) or open fewer"
        " sockets per process"
    )


def raise_soft_limit(needed: int) -> None:
    """This process may open ``needed`` files: its soft limit raised up to its hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            raise FileLimitError(
                f"a listener process needs {needed} open files, its hard limit is {hard}: "
                + _fix(needed)
            )
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


def check_socket_limits(per_listener: int, server_sockets: int, pids: Mapping[str, int]) -> None:
    """Before any socket opens: each listener process (a child of this one, same hard
    limit) can hold ``per_listener`` sockets, and each known platform process named
    ``api`` can hold ``server_sockets``; ``FileLimitError`` naming the limit otherwise."""
    needed = per_listener + FILES_TO_SPARE
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < needed:
        raise FileLimitError(
            f"each listener process needs {needed} open files, the hard limit here is {hard}: "
            + _fix(needed)
        )
    pid = pids.get("api")
    if pid is None:
        return  # a deployed platform: its limits are its operators'
    try:
        soft, _ = psutil.Process(pid).rlimit(resource.RLIMIT_NOFILE)
    except psutil.Error:
        return
    server_needed = server_sockets + FILES_TO_SPARE
    if soft != resource.RLIM_INFINITY and soft < server_needed:
        raise FileLimitError(
            f"the platform's api (pid {pid}) would hold {server_sockets} sockets, its open-file"
            f" limit is {soft}: " + _fix(server_needed)
        )
