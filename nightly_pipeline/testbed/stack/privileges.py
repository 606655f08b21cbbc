"""Running PostgreSQL unprivileged when the launcher is root.

PostgreSQL refuses to run as root. As root the launcher runs initdb, postgres and
pg_ctl as a system user (``nightly-pg``, created with ``useradd --system`` when missing;
``nobody`` when that fails), and makes sure that user can reach what it needs:

- the binaries: a pip wheel under a 0700 home (``/root/...``) is unreadable to it, so the
  install is copied once into a world-readable cache (``<system_dir>/pginstall/<key>``);
- the data directory: when the run directory is not traversable by that user (e.g. under
  ``/tmp/pytest-of-root``, 0700), the data lives in ``<system_dir>/pgdata/<key>`` instead.

Permission checks read mode bits (owner/group/other; ACLs are not consulted) and are
confirmed by running ``postgres --version`` as that user.
"""

from __future__ import annotations

import grp
import hashlib
import logging
import os
import pwd
import shutil
import stat
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nightly_pipeline.testbed.stack.binaries import PostgresBinaries
from nightly_pipeline.testbed.stack.errors import StackError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunAs:
    user: str
    uid: int
    gid: int

    def popen_kwargs(self) -> dict[str, Any]:
        return {"user": self.uid, "group": self.gid, "extra_groups": []}

    def chown_tree(self, path: Path) -> None:
        os.chown(path, self.uid, self.gid, follow_symlinks=False)
        for root, dirs, files in os.walk(path):
            for name in dirs + files:
                os.chown(os.path.join(root, name), self.uid, self.gid, follow_symlinks=False)


def is_root() -> bool:
    return os.geteuid() == 0


def ensure_user(name: str) -> RunAs:
    """The unprivileged user ``name``, created if missing; falls back to ``nobody``."""
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        cmd = ["useradd", "--system", "--no-create-home", "--user-group"]
        cmd += ["--shell", "/usr/sbin/nologin", name]
        try:
            subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=True)
            log.info("created system user %s to run PostgreSQL (it refuses to run as root)", name)
            entry = pwd.getpwnam(name)
        except (OSError, subprocess.SubprocessError, KeyError) as exc:
            detail = getattr(exc, "stderr", "") or exc
            log.warning("cannot create user %s (%s); running PostgreSQL as nobody", name, detail)
            entry = pwd.getpwnam("nobody")
    if entry.pw_uid == 0:
        raise StackError(f"user {entry.pw_name} has uid 0; PostgreSQL needs an unprivileged user")
    return RunAs(entry.pw_name, entry.pw_uid, entry.pw_gid)


def _groups(run_as: RunAs) -> set[int]:
    return {run_as.gid} | {g.gr_gid for g in grp.getgrall() if run_as.user in g.gr_mem}


def _allowed(st: os.stat_result, run_as: RunAs, groups: set[int], bits: int) -> bool:
    """``bits`` is a combination of 4 (r), 2 (w), 1 (x) checked in the applicable class."""
    if st.st_uid == run_as.uid:
        mode = (st.st_mode >> 6) & 7
    elif st.st_gid in groups:
        mode = (st.st_mode >> 3) & 7
    else:
        mode = st.st_mode & 7
    return mode & bits == bits


def can_traverse(path: Path, run_as: RunAs) -> bool:
    """Whether ``run_as`` can search every directory from / down to ``path`` inclusive."""
    groups = _groups(run_as)
    for directory in (path.resolve(), *path.resolve().parents):
        try:
            st = directory.stat()
        except OSError:
            return False
        if not _allowed(st, run_as, groups, 1):
            return False
    return True


def _runs_as(bins: PostgresBinaries, run_as: RunAs) -> bool:
    """Whether ``run_as`` can execute the tools (and load their shared libraries)."""
    for tool in ("postgres", "initdb", "pg_ctl"):
        try:
            done = subprocess.run(
                [str(bins.tool(tool)), "--version"],
                capture_output=True,
                timeout=15,
                cwd="/",
                **run_as.popen_kwargs(),
            )
        except (OSError, subprocess.SubprocessError):
            return False
        if done.returncode != 0:
            return False
    return True


def readable_install(bins: PostgresBinaries, run_as: RunAs, cache_root: Path) -> PostgresBinaries:
    """``bins`` if ``run_as`` can use them, else a copy in a world-readable cache."""
    if can_traverse(bins.install_root, run_as) and _runs_as(bins, run_as):
        return bins
    anchor, parts = bins.copy_plan()
    stamp = f"{anchor.resolve()}|{bins.version}|{bins.tool('postgres').stat().st_mtime_ns}"
    key = f"pg{bins.version}-{hashlib.sha1(stamp.encode()).hexdigest()[:12]}"
    target = cache_root / "pginstall" / key
    copied = PostgresBinaries(
        target / bins.bin_dir.relative_to(anchor), bins.version, bins.source + "+copy"
    )
    if not copied.tool("postgres").is_file():
        log.info(
            "%s is not usable by %s; copying the PostgreSQL install to %s (once)",
            bins.install_root,
            run_as.user,
            target,
        )
        make_public_dir(target.parent)
        staging = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=target.parent))
        try:
            for part in parts:
                shutil.copytree(part, staging / "x" / part.relative_to(anchor), symlinks=True)
            _make_world_readable(staging)
            (staging / "x").rename(target)  # atomic: concurrent launchers race safely
        except OSError:  # e.g. another launcher renamed its copy first
            if not copied.tool("postgres").is_file():
                raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    if not (can_traverse(target, run_as) and _runs_as(copied, run_as)):
        raise StackError(
            f"user {run_as.user} cannot run {copied.bin_dir} even after copying; "
            f"check the permissions of {cache_root} (system_dir)"
        )
    return copied


def make_public_dir(path: Path) -> None:
    """Create ``path`` (and parents) as root-owned 0755 directories; refuse a symlink."""
    path.mkdir(mode=0o755, parents=True, exist_ok=True)
    if path.is_symlink() or path.stat().st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise StackError(f"{path} must be a real directory not writable by group/other")
    path.chmod(0o755)


def _make_world_readable(root: Path) -> None:
    for dirpath, _dirs, files in os.walk(root):
        os.chmod(dirpath, os.stat(dirpath).st_mode | 0o555)
        for name in files:
            full = os.path.join(dirpath, name)
            if not os.path.islink(full):
                mode = os.stat(full).st_mode
                extra = 0o444 | (0o111 if mode & 0o100 else 0)
                os.chmod(full, mode | extra)
