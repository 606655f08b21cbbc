"""A real loopback HTTP server reporting a target version the test can change: the
target-version sensor's counterpart in its tests."""

from __future__ import annotations

import json

from tests.text_server import TextServer


class VersionServer(TextServer):
    """``{"version": ...}`` at /version; set ``version`` to change it."""

    def __init__(self) -> None:
        super().__init__("/version", "application/json")
        self.version = "1.0.0"

    @property
    def version(self) -> str:
        return json.loads(self.text)["version"]

    @version.setter
    def version(self, value: str) -> None:
        self.text = json.dumps({"version": value})
