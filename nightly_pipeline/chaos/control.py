"""Client of a fault proxy's control endpoint (see ``control_http``), for tests and faults."""

from __future__ import annotations

from typing import Any

import httpx

from nightly_pipeline.chaos.faults import Direction


class ProxyControlError(RuntimeError):
    """The control endpoint refused a request or could not be reached."""


class ProxyControl:
    """``ProxyControl("http://127.0.0.1:PORT")``; every call is one short HTTP request."""

    def __init__(self, url: str, timeout_s: float = 5.0) -> None:
        self.url = url.rstrip("/")
        self._client = httpx.Client(base_url=self.url, timeout=timeout_s, trust_env=False)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> ProxyControl:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def status(self) -> dict[str, Any]:
        return self._call("GET", "/status")

    def cut(self) -> dict[str, Any]:
        """Close every link and refuse new connections."""
        return self._call("POST", "/cut")

    def restore(self) -> dict[str, Any]:
        return self._call("POST", "/restore")

    def faults(self) -> list[dict[str, Any]]:
        return self._call("GET", "/faults")["faults"]

    def add_fault(
        self,
        type_name: str,
        *,
        name: str | None = None,
        direction: Direction = "downstream",
        toxicity: float = 1.0,
        **params: Any,
    ) -> list[dict[str, Any]]:
        body = {
            "name": name or type_name,
            "type": type_name,
            "direction": direction,
            "toxicity": toxicity,
            "params": params,
        }
        return self._call("POST", "/faults", json=body)["faults"]

    def remove_fault(self, name: str) -> list[dict[str, Any]]:
        return self._call("DELETE", f"/faults/{name}")["faults"]

    def set_latency(
        self, latency_ms: float, jitter_ms: float = 0.0, direction: Direction = "both"
    ) -> list[dict[str, Any]]:
        """Install the fault named ``latency``; ``latency_ms == 0`` removes it."""
        if latency_ms == 0:
            if any(f["name"] == "latency" for f in self.faults()):
                return self.remove_fault("latency")
            return self.faults()
        return self.add_fault(
            "latency", direction=direction, latency_ms=latency_ms, jitter_ms=jitter_ms
        )

    def _call(self, method: str, path: str, json: Any = None) -> dict[str, Any]:
        try:
            response = self._client.request(method, path, json=json)
        except httpx.HTTPError as exc:
            raise ProxyControlError(f"{method} {self.url}{path}: {exc}") from exc
        try:
            payload = response.json()
        except ValueError:
            payload = {"error": response.text}
        if response.status_code != 200:
            raise ProxyControlError(
                f"{method} {self.url}{path}: {response.status_code} {payload.get('error')}"
            )
        return payload
