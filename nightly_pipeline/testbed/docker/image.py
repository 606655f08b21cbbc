"""The platform's hermetic image: a root filesystem tar (``contents``) imported with
``docker import`` — no registry, no Dockerfile, no base image. Tagged with a hash of its
inputs (each file's image path, size, mtime and mode, and the builder's version), so it
is rebuilt only when an input changes; images are kept on purpose (a cache) and named
``nightly-testbed:<hash>`` with the label ``org.nightly-pipeline.image=testbed``. Its
modules are compiled in it (``bytecode``): a process start imports, never compiles.

PostgreSQL refuses to run as root: the image's default user is ``nightly`` (uid 1000),
which owns ``/var/lib/nightly`` (the datastores' data) and its home.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import tarfile
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import docker
import docker.errors

from nightly_pipeline.testbed.docker.bytecode import compiled_entries
from nightly_pipeline.testbed.docker.contents import APP_ROOT, PY_ROOT, Entry, image_entries

log = logging.getLogger(__name__)
REPOSITORY = "nightly-testbed"
LABEL = "org.nightly-pipeline.image"
BUILDER_VERSION = "2"  # 2: with bytecode (``bytecode``)
USER, UID = "nightly", 1000
DATA_DIR = "/var/lib/nightly"
ENV = {
    "PATH": f"{PY_ROOT}/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "LD_LIBRARY_PATH": f"{PY_ROOT}/lib",
    "PYTHONPATH": str(APP_ROOT),
    "PYTHONDONTWRITEBYTECODE": "1",
    "PYTHONUNBUFFERED": "1",
    "HOME": f"/home/{USER}",
}


@dataclass(frozen=True)
class Image:
    tag: str
    built: bool  # False: the cached image was used
    seconds: float
    tar_bytes: int  # 0 when cached
    files: int


def content_hash(entries: Iterable[Entry]) -> str:
    """Hash of what the image is made of (paths, sizes, mtimes, modes), not of the bytes:
    reading ~200 MB on every start would cost seconds."""
    digest = hashlib.sha256(f"builder {BUILDER_VERSION}\n".encode())
    for entry in entries:
        st = entry.source.stat()
        digest.update(f"{entry.arcname}\0{st.st_size}\0{st.st_mtime_ns}\0{st.st_mode}\n".encode())
    return digest.hexdigest()[:16]


def ensure_image(client: docker.DockerClient, python: str, project_root: Path) -> Image:
    """The image for this interpreter and project tree: found by its tag, or built now."""
    t0 = time.monotonic()
    entries = image_entries(python, project_root)
    tag = f"{REPOSITORY}:{content_hash(entries)}"
    try:
        client.images.get(tag)
        return Image(tag, False, time.monotonic() - t0, 0, len(entries))
    except docker.errors.ImageNotFound:
        pass
    with tempfile.TemporaryDirectory(prefix="nightly-rootfs-") as tmp:
        tar_path = Path(tmp) / "rootfs.tar"
        write_rootfs(entries + compiled_entries(python, entries, Path(tmp) / "pyc"), tar_path)
        size = tar_path.stat().st_size
        changes = [f"ENV {key}={value}" for key, value in ENV.items()]
        changes += [f"USER {USER}", f"WORKDIR /home/{USER}", f"LABEL {LABEL}=testbed"]
        repository, _, version = tag.partition(":")
        client.api.import_image_from_file(
            str(tar_path), repository=repository, tag=version, changes=changes
        )
    seconds = time.monotonic() - t0
    log.info("built %s in %.1f s (%.0f MB, %d files)", tag, seconds, size / 1e6, len(entries))
    return Image(tag, True, seconds, size, len(entries))


def write_rootfs(entries: Iterable[Entry], out: Path) -> None:
    """The root filesystem tar: every entry (symlinks followed: the image has no host
    paths to point to), the directories they need, users, ``/tmp`` and the data dir."""
    made: set[str] = set()
    with tarfile.open(out, "w") as tar:
        for name, mode, uid in (
            ("tmp", 0o1777, 0),
            (DATA_DIR.lstrip("/"), 0o755, UID),
            (f"home/{USER}", 0o755, UID),
            ("etc", 0o755, 0),
        ):
            _dirs(tar, made, name, mode, uid)
        passwd = f"root:x:0:0:root:/root:/bin/sh\n{USER}:x:{UID}:{UID}::/home/{USER}:/bin/sh\n"
        _text(tar, "etc/passwd", passwd)
        _text(tar, "etc/group", f"root:x:0:\n{USER}:x:{UID}:\n")
        for entry in entries:
            _dirs(tar, made, os.path.dirname(entry.arcname))
            info = tar.gettarinfo(str(entry.source.resolve()), arcname=entry.arcname)
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            with open(entry.source, "rb") as data:
                tar.addfile(info, data)
        version = "python3.11"
        for link in ("python3", "python"):
            info = tarfile.TarInfo(f"{str(PY_ROOT).lstrip('/')}/bin/{link}")
            info.type, info.linkname = tarfile.SYMTYPE, _python_name(entries) or version
            tar.addfile(info)


def _python_name(entries: Iterable[Entry]) -> str | None:
    prefix = f"{str(PY_ROOT).lstrip('/')}/bin/"
    for entry in entries:
        if entry.arcname.startswith(prefix):
            return entry.arcname[len(prefix) :]
    return None


def _dirs(tar: tarfile.TarFile, made: set[str], path: str, mode: int = 0o755, uid: int = 0) -> None:
    parts = [p for p in path.split("/") if p]
    for depth in range(1, len(parts) + 1):
        name = "/".join(parts[:depth])
        if name in made:
            continue
        info = tarfile.TarInfo(name)
        info.type = tarfile.DIRTYPE
        last = depth == len(parts)
        info.mode = mode if last else 0o755
        info.uid = info.gid = uid if last else 0
        tar.addfile(info)
        made.add(name)


def _text(tar: tarfile.TarFile, name: str, text: str) -> None:
    data = text.encode()
    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), 0o644
    tar.addfile(info, io.BytesIO(data))
