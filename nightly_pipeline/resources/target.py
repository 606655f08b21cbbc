"""What the version-change sensor watches: the target's version endpoint."""

import dagster as dg
import httpx
from pydantic import Field

from nightly_pipeline.loadgen.safety import check_target


class TargetVersionResource(dg.ConfigurableResource):
    """``url`` answers GET with the deployed version: JSON with a ``version`` key, or text.

    Empty ``url``: nothing to watch (the embedded stack's version only changes with this
    package). Only loopback URLs unless the host is in ``allow_hosts``.
    """

    url: str = ""
    allow_hosts: list[str] = Field(default_factory=list)
    timeout_s: float = 5.0

    def current_version(self) -> str:
        """The version the target reports now; raises httpx.HTTPError when unreachable."""
        check_target(self.url, tuple(self.allow_hosts))
        response = httpx.get(self.url, timeout=self.timeout_s)
        response.raise_for_status()
        if response.headers.get("content-type", "").startswith("application/json"):
            return str(response.json()["version"])
        return response.text.strip()
