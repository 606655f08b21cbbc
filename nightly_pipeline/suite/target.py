"""What the suite needs of a platform under test: URLs, credentials, where its metrics
are, and (when it runs on this machine) the processes whose resources it watches.

The suite owns this type; platforms implement it. The embedded reference platform hands
one out (``testbed.embedded.Platform.target()``); a deployed platform is described by a
JSON file (external target mode), for example::

    {
      "name": "staging",
      "base_url": "https://messaging.staging.example.com",
      "ws_url": "wss://messaging.staging.example.com/v1/ws",
      "metrics_urls": {"api": "https://messaging.staging.example.com/metrics"},
      "users": ["load0001", "load0002"],
      "password_env": "NIGHTLY_TARGET_PASSWORD",
      "allow_hosts": ["messaging.staging.example.com"]
    }

Memory checks read ``process_resident_memory_bytes`` (Prometheus' process collector) from
every ``metrics_urls`` entry, since a deployed platform offers no pids: list one endpoint
per process to watch; without the gauge they are "not measurable on this target"
(``suite.memory``).

The password is never in the file: ``password_env`` names the environment variable that
holds it, read by the entry point. Hosts other than loopback must be listed in
``allow_hosts`` or the load engine refuses them before any request.

A deployed platform offers no process handles to inject faults with; the chaos tests
(08–11) run there with the user's own Chaos Toolkit experiment, one per test, named by
``"chaos_experiments": {"09": "experiments/redis-partition.json"}`` (paths relative to
the target file; JSON or YAML; validated by Chaos Toolkit when the file is read).

Several environments, one test at a time on each (a night fanned out over them: ``nightly
run --target FILE --targets N``, ``suite.night_plan``), are listed in one file under
``targets``; each entry is a target as above, the file's other keys its defaults::

    {
      "password_env": "NIGHTLY_TARGET_PASSWORD",
      "users": ["load0001", "load0002"],
      "allow_hosts": ["a.staging.example.com", "b.staging.example.com"],
      "targets": [
        {"name": "staging-a", "base_url": "https://a.staging.example.com", "ws_url": "wss://..."},
        {"name": "staging-b", "base_url": "https://b.staging.example.com", "ws_url": "wss://..."}
      ]
    }

Test 13 applies a real migration under load: ``"migration": {"up": ..., "down": ...,
"dsn_env": ...}`` (SQL files in the step format, paths relative to the target file) or
``{"command": [...], "down_command": [...], "dsn_env": ...}`` (``suite.migration.source``);
validated when the file is read.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from nightly_pipeline.chaos.backend import ChaosBackend
from nightly_pipeline.loadgen import LoadgenError
from nightly_pipeline.loadgen.safety import check_target
from nightly_pipeline.suite.errors import ConfigurationError
from nightly_pipeline.suite.migration.source import MigrationSource, source_from_file


class TargetConfigError(ConfigurationError):
    """A target file that cannot be used; the message names the file and the fix."""


@dataclass(frozen=True)
class Target:
    name: str
    base_url: str
    ws_url: str
    metrics_urls: Mapping[str, str]  # endpoint name -> Prometheus /metrics URL
    users: tuple[str, ...]  # seeded usernames the load logs in as
    password: str
    allow_hosts: tuple[str, ...] = ()  # non-loopback hosts load may go to
    versions: Mapping[str, str] = field(default_factory=dict)
    pids: Mapping[str, int] = field(default_factory=dict)
    """Processes whose memory the suite samples (process name -> pid); empty for a
    deployed platform, whose memory comes from ``process_resident_memory_bytes``."""
    chaos: ChaosBackend | None = field(default=None, compare=False, repr=False)
    """The platform's own handles for fault injection (processes, proxies, datastores);
    None for a deployed platform."""
    experiments: Mapping[str, Path] = field(default_factory=dict)
    """Test id -> the user's Chaos Toolkit experiment that injects that chaos test's
    faults instead of the suite's own (``chaos_experiments`` in the target file)."""
    migration: MigrationSource | None = field(default=None, compare=False, repr=False)
    """The migration Test 13 applies under load and rolls back, and its database: the
    embedded platform's next migration, or the target file's ``migration``."""


REQUIRED = ("name", "base_url", "ws_url", "users", "password_env")


def load_target(path: Path, env: Mapping[str, str], entry: str = "") -> Target:
    """Read an external target file; every problem is reported at once. A file listing
    ``targets`` needs ``entry``, the name of the one to use."""
    raw = _read(path)
    if "targets" not in raw:
        if entry and raw.get("name") != entry:
            raise TargetConfigError(f"target file {path}: lists no targets; {entry!r} is not in it")
        return _target_from(path, raw, env)
    entries = _entries(path, raw)
    if not entry:
        raise TargetConfigError(
            f"target file {path}: lists {len(entries)} targets ({', '.join(entries)}): "
            "fan the night out over them (nightly run --targets N) or name one"
        )
    if entry not in entries:
        raise TargetConfigError(
            f"target file {path}: no target named {entry!r}; it lists {', '.join(entries)}"
        )
    return _target_from(path, entries[entry], env)


def load_targets(path: Path, env: Mapping[str, str]) -> dict[str, Target]:
    """Every target of a file, by name (a single-target file: its one target)."""
    raw = _read(path)
    if "targets" not in raw:
        target = _target_from(path, raw, env)
        return {target.name: target}
    return {name: _target_from(path, e, env) for name, e in _entries(path, raw).items()}


def target_names_in(path: Path) -> tuple[str, ...]:
    """The names of a file's targets, in its order, without checking the rest."""
    raw = _read(path)
    if "targets" not in raw:
        return (str(raw.get("name", path.stem)),)
    return tuple(_entries(path, raw))


def _read(path: Path) -> dict:
    try:
        raw = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise TargetConfigError(f"target file {path}: cannot read it as JSON: {exc}") from exc
    if not isinstance(raw, dict):
        raise TargetConfigError(f"target file {path}: must hold a JSON object")
    return raw


def _entries(path: Path, raw: dict) -> dict[str, dict]:
    """``targets``' entries by name, each with the file's other keys as its defaults."""
    listed = raw["targets"]
    if not isinstance(listed, list) or not listed:
        raise TargetConfigError(f"target file {path}: targets must be a non-empty list")
    defaults = {k: v for k, v in raw.items() if k != "targets"}
    entries: dict[str, dict] = {}
    for i, item in enumerate(listed):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise TargetConfigError(f'target file {path}: targets[{i}] needs a "name"')
        if item["name"] in entries:
            raise TargetConfigError(f"target file {path}: two targets named {item['name']!r}")
        entries[item["name"]] = {**defaults, **item}
    return entries


def _target_from(path: Path, raw: dict, env: Mapping[str, str]) -> Target:
    """One target's keys (``REQUIRED`` and the optional ones) as a checked ``Target``."""
    problems = [f"missing key {key!r}" for key in REQUIRED if key not in raw]
    if not problems:
        for key in ("base_url", "ws_url"):
            scheme = urlsplit(raw[key]).scheme
            wanted = ("http", "https") if key == "base_url" else ("ws", "wss")
            if scheme not in wanted:
                problems.append(f"{key} must start with {' or '.join(wanted)}://")
        if not raw["users"]:
            problems.append("users must list at least one seeded user")
        if raw["password_env"] not in env:
            problems.append(f"environment variable {raw['password_env']} (password_env) is unset")
    experiments, experiment_problems = _experiments(Path(path), raw.get("chaos_experiments", {}))
    problems += experiment_problems
    migration = None
    if "migration" in raw:
        migration, migration_problems = source_from_file(Path(path).parent, raw["migration"], env)
        problems += migration_problems
    if problems:
        raise TargetConfigError(_listing(path, problems))
    target = Target(
        name=raw["name"],
        base_url=raw["base_url"].rstrip("/"),
        ws_url=raw["ws_url"],
        metrics_urls=dict(raw.get("metrics_urls", {})),
        users=tuple(raw["users"]),
        password=env[raw["password_env"]],
        allow_hosts=tuple(raw.get("allow_hosts", ())),
        experiments=experiments,
        migration=migration,
    )
    refused = unreachable_by_policy(target)
    if refused:
        raise TargetConfigError(_listing(path, refused))
    return target


def _experiments(path: Path, raw: object) -> tuple[dict[str, Path], list[str]]:
    """``chaos_experiments``: test id -> experiment file, each loaded and validated."""
    from nightly_pipeline.chaos.chaostoolkit_adapter import ExperimentInvalid, load_experiment

    if not isinstance(raw, dict):
        return {}, ['chaos_experiments must map test ids to files: {"09": "partition.json"}']
    found, problems = {}, []
    for test_id, name in raw.items():
        if not (isinstance(test_id, str) and len(test_id) == 2 and test_id.isdigit()):
            problems.append(f"chaos_experiments: {test_id!r} is not a test id such as '09'")
            continue
        file = path.parent / str(name)
        try:
            load_experiment(file)
        except ExperimentInvalid as exc:
            problems.append(f"chaos_experiments[{test_id!r}]: {exc}")
            continue
        found[test_id] = file
    return found, problems


def unreachable_by_policy(target: Target) -> list[str]:
    """Every URL of ``target`` that load or scrapes may not go to (a host neither loopback
    nor in ``allow_hosts``), each with the fix."""
    urls = {"base_url": target.base_url, "ws_url": target.ws_url}
    urls |= {f"metrics_urls.{name}": url for name, url in target.metrics_urls.items()}
    problems = []
    for key, url in urls.items():
        try:
            check_target(url, target.allow_hosts)
        except LoadgenError as exc:
            problems.append(f"{key}: {exc}")
    return problems


def _listing(path: Path, problems: list[str]) -> str:
    return f"target file {path}:\n  - " + "\n  - ".join(problems)
