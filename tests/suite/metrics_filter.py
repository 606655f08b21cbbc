"""A real HTTP ``/metrics`` endpoint that serves another one's exposition without some
families: a platform whose exporter lacks Prometheus' process collector, built from the
embedded platform's own metrics (everything else the checks read is still there)."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx


def without(text: str, prefix: str) -> str:
    """``text`` without the samples, HELP and TYPE lines of families named ``prefix*``."""
    kept = []
    for line in text.splitlines():
        words = line.split()
        name = words[2] if line.startswith("#") and len(words) > 2 else line
        if not name.startswith(prefix):
            kept.append(line)
    return "\n".join(kept) + "\n"


@contextlib.contextmanager
def filtered_metrics(upstream: str, drop_prefix: str) -> Iterator[str]:
    """Serve ``upstream``'s exposition without ``drop_prefix*`` families; yields the URL.
    The server is shut down and its socket closed on exit."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            answer = httpx.get(upstream, timeout=2.0, trust_env=False)
            body = without(answer.text, drop_prefix).encode()
            self.send_response(answer.status_code)
            self.send_header("content-type", "text/plain; version=0.0.4")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, name="metrics-filter", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/metrics"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
