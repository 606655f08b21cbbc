"""The loopback servers the loadgen tests use (in the package: the self-check uses them)."""

from nightly_pipeline.testbed.echo import (
    ServerHandle,
    closed_port,
    get_json,
    http_server,
    pause,
    paused,
    ws_server,
)

__all__ = ["ServerHandle", "closed_port", "get_json", "http_server", "pause", "paused", "ws_server"]
