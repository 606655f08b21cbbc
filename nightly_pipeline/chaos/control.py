"""Client of a fault proxy's control endpoint, which speaks Toxiproxy's HTTP API (see
``control_http``), for tests and faults. A real Toxiproxy server works too, except for
``status()`` (our ``/stats`` extension).

    with ProxyControl(endpoints.redis_proxy_control) as proxy:
        with proxy.toxic("latency", latency=100):   # removed on exit, even on error
            ...
        with proxy.down():                          # disabled, then enabled again
            ...
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any, Literal
from urllib.parse import quote

import httpx

from nightly_pipeline.chaos.faults import Stream


class ProxyControlError(RuntimeError):
    """The control endpoint refused a request (``status``: its HTTP status) or could not
    be reached (``status`` None)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class ProxyControl:
    """``ProxyControl("http://127.0.0.1:PORT")`` drives the one proxy served there (or
    ``proxy=NAME`` among several); every call is one short HTTP request."""

    def __init__(self, url: str, timeout_s: float = 5.0, proxy: str | None = None) -> None:
        self.url = url.rstrip("/")
        self._name = proxy
        self._client = httpx.Client(base_url=self.url, timeout=timeout_s, trust_env=False)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> ProxyControl:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------ the server

    def version(self) -> str:
        return str(self._call("GET", "/version")["version"])

    def proxies(self) -> dict[str, dict[str, Any]]:
        return self._call("GET", "/proxies")

    def create_proxy(
        self, name: str, upstream: str, listen: str = "127.0.0.1:0", *, enabled: bool = True
    ) -> dict[str, Any]:
        """A new proxy on the server (loopback addresses); its JSON, with the port bound."""
        body = {"name": name, "upstream": upstream, "listen": listen, "enabled": enabled}
        return self._call("POST", "/proxies", json=body)

    def reset(self) -> None:
        """Every proxy of the server enabled, every toxic removed (Toxiproxy's ``/reset``)."""
        self._call("POST", "/reset")

    @property
    def name(self) -> str:
        """The proxy driven: the one given, else the only one the server has."""
        if self._name is None:
            names = sorted(self.proxies())
            if len(names) != 1:
                raise ProxyControlError(f"{self.url} serves proxies {names}: pass proxy=NAME")
            self._name = names[0]
        return self._name

    # ------------------------------------------------------------ the proxy

    def proxy(self) -> dict[str, Any]:
        """Toxiproxy's proxy JSON: name, listen, upstream, enabled, toxics."""
        return self._call("GET", self._path())

    def status(self) -> dict[str, Any]:
        """The proxy JSON plus ``cut`` (not enabled) and link/byte counters."""
        return self._call("GET", self._path("stats"))

    def cut(self) -> dict[str, Any]:
        """Disable: close every link and refuse new connections."""
        return self._call("POST", self._path(), json={"enabled": False})

    def restore(self) -> dict[str, Any]:
        """Enable: listen again on the same port."""
        return self._call("POST", self._path(), json={"enabled": True})

    @contextlib.contextmanager
    def down(self) -> Iterator[None]:
        """Disabled inside the block, enabled again on exit (also on error)."""
        self.cut()
        try:
            yield
        finally:
            self.restore()

    # ------------------------------------------------------------ toxics

    def toxics(self) -> list[dict[str, Any]]:
        return self._call("GET", self._path("toxics"))

    def add_toxic(
        self,
        type_name: str,
        *,
        name: str | None = None,
        stream: Stream = "downstream",
        toxicity: float = 1.0,
        **attributes: Any,
    ) -> dict[str, Any]:
        """Install a toxic (named ``<type>_<stream>`` unless ``name``); its JSON."""
        body = {
            "name": name or f"{type_name}_{stream}",
            "type": type_name,
            "stream": stream,
            "toxicity": toxicity,
            "attributes": attributes,
        }
        return self._call("POST", self._path("toxics"), json=body)

    def update_toxic(
        self, name: str, *, toxicity: float | None = None, **attributes: Any
    ) -> dict[str, Any]:
        """Change some attributes (and/or toxicity) of a live toxic."""
        body: dict[str, Any] = {"attributes": attributes}
        if toxicity is not None:
            body["toxicity"] = toxicity
        return self._call("POST", self._path("toxics", name), json=body)

    def remove_toxic(self, name: str) -> None:
        """Remove a toxic; what it holds on live links is delivered, not dropped."""
        self._call("DELETE", self._path("toxics", name))

    @contextlib.contextmanager
    def toxic(
        self,
        type_name: str,
        *,
        name: str | None = None,
        stream: Stream = "downstream",
        toxicity: float = 1.0,
        **attributes: Any,
    ) -> Iterator[dict[str, Any]]:
        """A toxic for the duration of the block, removed in ``finally``."""
        toxic = self.add_toxic(type_name, name=name, stream=stream, toxicity=toxicity, **attributes)
        try:
            yield toxic
        finally:
            self.remove_toxic(toxic["name"])

    def set_latency(
        self,
        latency_ms: float,
        jitter_ms: float = 0,
        direction: Stream | Literal["both"] = "both",
    ) -> list[dict[str, Any]]:
        """Toxics ``latency_<stream>`` of ``latency_ms`` ± ``jitter_ms`` on each stream of
        ``direction`` (``both``: each way, so a round trip gains twice); ``latency_ms ==
        0`` removes them. Returns the proxy's toxics."""
        streams: tuple[Stream, ...] = (
            ("upstream", "downstream") if direction == "both" else (direction,)
        )
        installed = {t["name"] for t in self.toxics()}
        for stream in streams:
            name = f"latency_{stream}"
            if latency_ms == 0:
                if name in installed:
                    self.remove_toxic(name)
            elif name in installed:
                self.update_toxic(name, latency=latency_ms, jitter=jitter_ms)
            else:
                self.add_toxic("latency", stream=stream, latency=latency_ms, jitter=jitter_ms)
        return self.toxics()

    # ------------------------------------------------------------ plumbing

    def _path(self, *parts: str) -> str:
        return "/".join(
            ["/proxies", quote(self.name, safe="")] + [quote(p, safe="") for p in parts]
        )

    def _call(self, method: str, path: str, json: Any = None) -> Any:
        try:
            response = self._client.request(method, path, json=json)
        except httpx.HTTPError as exc:
            raise ProxyControlError(f"{method} {self.url}{path}: {exc}") from exc
        if response.status_code == 204:
            return None
        try:
            payload = response.json()
        except ValueError:
            payload = {"error": response.text}
        if not response.is_success:
            error = payload.get("error") if isinstance(payload, dict) else payload
            raise ProxyControlError(
                f"{method} {self.url}{path}: {response.status_code} {error}",
                response.status_code,
            )
        return payload
