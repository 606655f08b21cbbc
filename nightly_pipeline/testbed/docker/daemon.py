"""A Docker daemon to run the platform's containers on: the user's own (``DOCKER_HOST`` or
the default socket), or a private ``dockerd`` the project starts and stops by its pid.

A default dockerd rewrites the host firewall (DOCKER* chains, NAT masquerade, FORWARD
policy DROP, a docker0 bridge) and leaves it changed after it stops; a private daemon is
therefore started with ``--iptables=false --ip-masq=false --bridge=none``: containers on a
user-defined bridge network still reach each other (one L2 segment) and ports published
on 127.0.0.1 go through ``docker-proxy`` (a userland process, no NAT rule). Its data,
exec root, pid file and socket live under one short temporary directory (containerd's
unix sockets must fit in 108 bytes); on stop the bridge interfaces it created are
removed and the directory deleted.

    with private_daemon(Path("/usr/sbin/dockerd")) as daemon:
        client = daemon.client()        # docker.DockerClient
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import docker
import docker.errors

log = logging.getLogger(__name__)
DEFAULT_SOCKET = "unix:///var/run/docker.sock"
SAFE_FLAGS = ("--iptables=false", "--ip6tables=false", "--ip-masq=false", "--bridge=none")
CGROUP_FLAGS = ("--cgroup-parent=/",)
READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 20.0
_POLL_S = 0.1


class DockerUnavailableError(RuntimeError):
    """No Docker daemon can be reached or started; the message names the fix."""


@dataclass(frozen=True)
class Daemon:
    """A reachable daemon: its address, and the pid when this process started it."""

    base_url: str
    pid: int | None = None
    root: Path | None = None

    def client(self, timeout_s: float = 120.0) -> docker.DockerClient:
        return docker.DockerClient(base_url=self.base_url, timeout=int(timeout_s))


def ping(base_url: str) -> bool:
    """Whether a daemon answers ``/_ping`` at ``base_url``."""
    try:
        client = docker.DockerClient(base_url=base_url, timeout=5)
    except docker.errors.DockerException:
        return False
    try:
        return bool(client.ping())
    except (docker.errors.DockerException, OSError):
        return False
    finally:
        client.close()


def reachable_daemon(docker_host: str | None) -> Daemon | None:
    """The user's daemon: ``docker_host`` (the entry point passes ``$DOCKER_HOST``), else
    the default socket; None when neither answers."""
    for url in dict.fromkeys([u for u in (docker_host, DEFAULT_SOCKET) if u]):
        if ping(url):
            return Daemon(url)
    return None


def find_dockerd(search_path: str | None) -> Path | None:
    """``dockerd`` on ``search_path`` or in /usr/sbin and /usr/bin (Debian's docker.io)."""
    found = shutil.which("dockerd", path=search_path) if search_path else None
    for candidate in (found, "/usr/sbin/dockerd", "/usr/bin/dockerd"):
        if candidate and os.access(candidate, os.X_OK):
            return Path(candidate)
    return None


def bridge_interfaces() -> set[str]:
    """Names of the host's bridge interfaces (``/sys/class/net/*/bridge``)."""
    return {p.parent.name for p in Path("/sys/class/net").glob("*/bridge")}


@contextlib.contextmanager
def private_daemon(dockerd: Path, parent: Path | None = None) -> Iterator[Daemon]:
    """Start a private dockerd (root only) for the ``with`` body; stop it by pid after it,
    on errors and on Ctrl-C, remove the bridges it created and its directory."""
    if os.geteuid() != 0:
        raise DockerUnavailableError(
            "a private dockerd needs root; run as root or point DOCKER_HOST at a daemon"
        )
    root = Path(tempfile.mkdtemp(prefix="nd-", dir=parent or "/tmp"))
    bridges_before = bridge_interfaces()
    sock = root / "docker.sock"
    argv = [str(dockerd), "--data-root", str(root / "data"), "--exec-root", str(root / "x")]
    argv += ["--pidfile", str(root / "dockerd.pid"), "-H", f"unix://{sock}", *SAFE_FLAGS]
    argv += CGROUP_FLAGS
    log_path = root / "dockerd.log"
    with open(log_path, "ab") as out:
        proc = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
    try:
        daemon = Daemon(f"unix://{sock}", proc.pid, root)
        _wait_ready(daemon, proc, log_path)
        yield daemon
    finally:
        _stop(proc)
        for name in bridge_interfaces() - bridges_before:
            subprocess.run(["ip", "link", "delete", name], capture_output=True, check=False)
        _unmount_under(root)
        shutil.rmtree(root, ignore_errors=True)


def _wait_ready(daemon: Daemon, proc: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise DockerUnavailableError(
                f"dockerd exited with code {proc.returncode}: {_tail(log_path)}"
            )
        if ping(daemon.base_url):
            return
        time.sleep(_POLL_S)
    raise DockerUnavailableError(
        f"dockerd did not answer within {READY_TIMEOUT_S:.0f} s: {_tail(log_path)}"
    )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM (dockerd stops its containers and containerd), then SIGKILL."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            log.warning(
                "dockerd pid %d ignored SIGTERM for %.0f s: SIGKILL", proc.pid, STOP_TIMEOUT_S
            )
            proc.kill()
            proc.wait(STOP_TIMEOUT_S)


def _unmount_under(root: Path) -> None:
    """Mounts dockerd may have left under ``root`` (a killed daemon's overlay and shm)."""
    try:
        mounts = Path("/proc/self/mounts").read_text().splitlines()
    except OSError:
        return
    points = [line.split()[1] for line in mounts if len(line.split()) > 1]
    for point in sorted((p for p in points if p.startswith(f"{root}/")), reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True, check=False)


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
