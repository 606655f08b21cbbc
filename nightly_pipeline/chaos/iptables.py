"""iptables rules, tagged so that they can be found and removed, in this network namespace
or in a named one (``ip netns exec``).

The ``iptables`` command is driven directly: it is what every distribution ships (the
nf_tables backend included) and what an operator reads; the Python bindings
(python-iptables) speak only the legacy backend.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence

COMMAND_TIMEOUT_S = 10.0
TAG = "nightly-chaos"


class IptablesError(RuntimeError):
    """iptables is missing, not permitted, or refused a rule; the message names the fix."""


def _argv(netns: str | None, args: Sequence[str]) -> list[str]:
    binary = shutil.which("iptables")
    if binary is None:
        raise IptablesError(
            "iptables is not installed: `apt-get install iptables` (the partition fault "
            "needs it, and root or CAP_NET_ADMIN)"
        )
    prefix = ["ip", "netns", "exec", netns] if netns else []
    return [*prefix, binary, "-w", "5", *args]


def run(args: Sequence[str], netns: str | None = None) -> str:
    """One iptables command; its stdout, or ``IptablesError`` quoting iptables' own words."""
    argv = _argv(netns, args)
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise IptablesError(f"{' '.join(argv)}: {exc}") from exc
    if done.returncode != 0:
        words = (done.stderr or done.stdout).strip()
        hint = " (needs root or CAP_NET_ADMIN)" if "ermission" in words else ""
        raise IptablesError(f"{' '.join(argv)}: {words}{hint}")
    return done.stdout


def add(chain: str, rule: Sequence[str], netns: str | None = None) -> None:
    run(["-I", chain, *rule], netns)


def delete(chain: str, rule: Sequence[str], netns: str | None = None) -> bool:
    """Remove one rule; False when it was not there (already reverted)."""
    if not present(chain, rule, netns):
        return False
    run(["-D", chain, *rule], netns)
    return True


def present(chain: str, rule: Sequence[str], netns: str | None = None) -> bool:
    try:
        run(["-C", chain, *rule], netns)
    except IptablesError as exc:
        if "does a matching rule exist" in str(exc) or "Bad rule" in str(exc):
            return False
        raise
    return True


def tagged(netns: str | None = None) -> list[str]:
    """Every rule this project added and has not removed, as ``iptables -S`` prints it."""
    return [line for line in run(["-S"], netns).splitlines() if TAG in line]
