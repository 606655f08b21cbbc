"""Toxiproxy's HTTP API (2.x) over this package's proxies, so Toxiproxy clients (the Go
and Ruby clients, ``toxiproxy-python``, ``chaostoolkit-toxiproxy``) drive it as they are.

    GET    /version                          {"version": "..."}
    GET    /proxies                          {name: proxy, ...}
    POST   /proxies                          create {name, listen, upstream, enabled}: 201
    POST   /populate                         create or replace a list of proxies: 201
    GET    /proxies/{proxy}                  proxy {name, listen, upstream, enabled, toxics}
    POST   /proxies/{proxy}                  update listen/upstream/enabled (also PATCH)
    DELETE /proxies/{proxy}                  204
    GET    /proxies/{proxy}/toxics           [toxic, ...]
    POST   /proxies/{proxy}/toxics           create {name, type, stream, toxicity, attributes}
    GET    /proxies/{proxy}/toxics/{toxic}   toxic
    POST   /proxies/{proxy}/toxics/{toxic}   update attributes/toxicity (also PATCH)
    DELETE /proxies/{proxy}/toxics/{toxic}   204
    POST   /reset                            enable every proxy, remove every toxic: 204
    GET    /proxies/{proxy}/stats            ours, not Toxiproxy's: link and byte counters

Errors are Toxiproxy's ``{"error": "...", "status": code}``: 400 bad request (also a
listen or upstream address that is not loopback: this proxy never leaves the machine),
404 unknown proxy or toxic, 409 already exists, 500 a listen that fails; 403 for a
browser's user agent, as Toxiproxy does, so a web page cannot drive it. Minimal HTTP/1.1:
one request per connection, bodies by Content-Length.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any
from urllib.parse import unquote

from nightly_pipeline.chaos.faults import STREAMS, FaultSlot, build_fault, fault_types
from nightly_pipeline.chaos.proxy import (
    FaultProxy,
    ProxyConfig,
    ProxyStateError,
    format_address,
    parse_address,
)

VERSION = "2.12.0+nightly-pipeline"  # the Toxiproxy API this speaks
_MAX_BODY = 1024 * 1024
_READ_TIMEOUT_S = 15.0
_FIELDS = {"name": str, "listen": str, "upstream": str, "enabled": bool}


class ApiError(Exception):
    """An answer with Toxiproxy's error shape."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status

    def payload(self) -> dict[str, Any]:
        return {"error": str(self), "status": self.status}


def _bad(message: str) -> ApiError:
    return ApiError(400, f"bad request body: {message}")


class ProxyCollection:
    """The proxies one control server serves, by name (Toxiproxy's ``ProxyCollection``)."""

    def __init__(self, proxies: Mapping[str, FaultProxy] | None = None) -> None:
        self.proxies: dict[str, FaultProxy] = dict(proxies or {})

    def get(self, name: str) -> FaultProxy:
        try:
            return self.proxies[name]
        except KeyError:
            raise ApiError(404, "proxy not found") from None

    async def create(self, spec: Mapping[str, Any], *, replace: bool = False) -> FaultProxy:
        """Create (or with ``replace``, keep an identical one or replace a different one)."""
        name, listen, upstream = spec["name"], spec["listen"], spec["upstream"]
        existing = self.proxies.get(name)
        if existing is not None:
            if not replace:
                raise ApiError(409, "proxy already exists")
            if not _differs(existing, listen, upstream):
                return existing
            await existing.stop()
            del self.proxies[name]
        config = ProxyConfig(
            upstream_host=upstream[0],
            upstream_port=upstream[1],
            listen_host=listen[0],
            listen_port=listen[1],
            name=name,
        )
        try:
            proxy = FaultProxy(config)
        except ValueError as exc:
            raise _bad(str(exc)) from exc
        try:
            await proxy.start(enabled=spec["enabled"])
        except OSError as exc:
            address = format_address(*listen)
            raise ApiError(500, f"listen tcp {address}: {exc.strerror or exc}") from exc
        self.proxies[name] = proxy
        return proxy

    async def remove(self, name: str) -> None:
        await self.get(name).stop()
        del self.proxies[name]

    async def reset(self) -> None:
        for proxy in self.proxies.values():
            if not proxy.enabled:
                await proxy.restore()
            proxy.clear_faults()

    async def stop_all(self) -> None:
        for proxy in self.proxies.values():
            await proxy.stop()


def _differs(proxy: FaultProxy, listen: tuple[str, int], upstream: tuple[str, int]) -> bool:
    current_listen = (proxy.config.listen_host, proxy.port)
    current_upstream = (proxy.config.upstream_host, proxy.config.upstream_port)
    return listen != current_listen or upstream != current_upstream


def _proxy_spec(spec: Any, defaults: Mapping[str, Any], where: str = "") -> dict[str, Any]:
    """Toxiproxy's proxy fields over ``defaults``, addresses parsed; 400 when wrong."""
    if not isinstance(spec, dict):
        raise _bad(f"expected a JSON object{where}")
    out = dict(defaults)
    for key, kind in _FIELDS.items():
        value = spec.get(key)
        if value is None:
            continue
        if not isinstance(value, kind):
            raise _bad(f"{key} must be a {kind.__name__}{where}, got {value!r}")
        out[key] = value
    for key in ("name", "upstream"):
        if not out.get(key):
            raise ApiError(400, f"missing required field: {key}{where}")
    for key in ("listen", "upstream"):
        try:
            out[key] = parse_address(out[key])
        except ValueError as exc:
            raise _bad(f"{key}: {exc}{where}") from exc
    return out


def _json(body: bytes) -> Any:
    try:
        return json.loads(body or b"null")
    except ValueError as exc:
        raise _bad(str(exc)) from exc


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _bad(f"{what} must be a number, got {value!r}")
    return value


class ToxiproxyApi:
    """The routes, over a :class:`ProxyCollection`; one request at a time."""

    def __init__(self, proxies: ProxyCollection) -> None:
        self.proxies = proxies
        self._lock = asyncio.Lock()

    async def handle(self, method: str, path: str, body: bytes) -> tuple[int, Any]:
        parts = [unquote(p) for p in path.strip("/").split("/")] if path.strip("/") else []
        async with self._lock:
            return await self._route(method, parts, body)

    async def _route(self, method: str, parts: list[str], body: bytes) -> tuple[int, Any]:
        routes: dict[tuple[str, ...], tuple[str, ...]] = {
            ("version",): ("GET",),
            ("reset",): ("POST",),
            ("populate",): ("POST",),
            ("proxies",): ("GET", "POST"),
            ("proxies", "*"): ("GET", "POST", "PATCH", "DELETE"),
            ("proxies", "*", "stats"): ("GET",),
            ("proxies", "*", "toxics"): ("GET", "POST"),
            ("proxies", "*", "toxics", "*"): ("GET", "POST", "PATCH", "DELETE"),
        }
        shape = tuple("*" if i in (1, 3) else p for i, p in enumerate(parts))
        if shape not in routes:
            raise ApiError(404, "not found")
        if method not in routes[shape]:
            raise ApiError(405, f"method {method} not allowed")
        if shape == ("version",):
            return 200, {"version": VERSION}
        if shape == ("reset",):
            try:
                await self.proxies.reset()
            except ProxyStateError as exc:
                raise ApiError(500, str(exc)) from exc
            return 204, None
        if shape == ("populate",):
            return await self._populate(_json(body))
        if shape == ("proxies",):
            if method == "GET":
                return 200, {n: p.to_json() for n, p in self.proxies.proxies.items()}
            spec = _proxy_spec(_json(body), {"listen": "127.0.0.1:0", "enabled": True})
            return 201, (await self.proxies.create(spec)).to_json()
        proxy = self.proxies.get(parts[1])
        if len(parts) == 2:
            return await self._proxy(method, proxy, body)
        if parts[2] == "stats":
            return 200, proxy.status()
        if len(parts) == 3:
            if method == "GET":
                return 200, [slot.describe() for slot in proxy.faults()]
            return 200, _create_toxic(proxy, _json(body)).describe()
        return _toxic(method, proxy, parts[3], body)

    async def _proxy(self, method: str, proxy: FaultProxy, body: bytes) -> tuple[int, Any]:
        if method == "GET":
            return 200, proxy.to_json()
        if method == "DELETE":
            await self.proxies.remove(proxy.name)
            return 204, None
        current = {
            "name": proxy.name,
            "listen": proxy.listen,
            "upstream": proxy.config.upstream,
            "enabled": proxy.enabled,
        }
        spec = _proxy_spec(_json(body) or {}, current)
        try:
            if _differs(proxy, spec["listen"], spec["upstream"]):
                await proxy.reconfigure(spec["listen"], spec["upstream"])
            if spec["enabled"] and not proxy.enabled:
                await proxy.restore()
            elif not spec["enabled"] and proxy.enabled:
                await proxy.cut()
        except ProxyStateError as exc:
            raise ApiError(500, str(exc)) from exc
        except ValueError as exc:
            raise _bad(str(exc)) from exc
        return 200, proxy.to_json()

    async def _populate(self, specs: Any) -> tuple[int, Any]:
        if not isinstance(specs, list):
            raise _bad("expected a JSON array of proxies")
        defaults = {"listen": "127.0.0.1:0", "enabled": True}
        parsed = [_proxy_spec(s, defaults, f" at proxy {i + 1}") for i, s in enumerate(specs)]
        done: list[FaultProxy] = []
        for spec in parsed:
            try:
                done.append(await self.proxies.create(spec, replace=True))
            except ApiError as exc:
                return exc.status, {**exc.payload(), "proxies": [p.to_json() for p in done]}
        return 201, {"proxies": [p.to_json() for p in done]}


def _create_toxic(proxy: FaultProxy, spec: Any) -> FaultSlot:
    if not isinstance(spec, dict):
        raise _bad("expected a JSON object")
    stream = spec.get("stream")
    stream = "downstream" if stream is None else str(stream).lower()
    if stream not in STREAMS:
        raise ApiError(400, "stream was invalid, can be either upstream or downstream")
    type_name = spec.get("type")
    if type_name not in fault_types():
        raise ApiError(400, "invalid toxic type")
    name = spec.get("name") or f"{type_name}_{stream}"
    if not isinstance(name, str):
        raise _bad(f"name must be a string, got {name!r}")
    if any(slot.name == name for slot in proxy.faults()):
        raise ApiError(409, "toxic already exists")
    slot = _slot(name, type_name, stream, spec.get("toxicity", 1.0), spec.get("attributes"))
    proxy.add_fault(slot)
    return slot


def _toxic(method: str, proxy: FaultProxy, name: str, body: bytes) -> tuple[int, Any]:
    slot = next((s for s in proxy.faults() if s.name == name), None)
    if slot is None:
        raise ApiError(404, "toxic not found")
    if method == "GET":
        return 200, slot.describe()
    if method == "DELETE":
        proxy.remove_fault(name)
        return 204, None
    spec = _json(body) or {}
    if not isinstance(spec, dict):
        raise _bad("expected a JSON object")
    attributes = spec.get("attributes") or {}
    if not isinstance(attributes, dict):
        raise _bad("attributes must be a JSON object")
    merged = {**slot.fault.attributes(), **attributes}
    toxicity = spec.get("toxicity", slot.toxicity)
    new = _slot(name, slot.fault.type_name, slot.stream, toxicity, merged)
    proxy.update_fault(new)
    return 200, new.describe()


def _slot(name: str, type_name: str, stream: Any, toxicity: Any, attributes: Any) -> FaultSlot:
    if attributes is not None and not isinstance(attributes, dict):
        raise _bad("attributes must be a JSON object")
    toxicity = 1.0 if toxicity is None else _number(toxicity, "toxicity")
    try:
        return FaultSlot(name, build_fault(type_name, attributes), stream, toxicity)
    except ValueError as exc:
        raise _bad(str(exc)) from exc


class ControlServer:
    """Serves :class:`ToxiproxyApi` on ``host:port`` (loopback; port 0 picks one)."""

    def __init__(
        self, proxies: ProxyCollection | FaultProxy, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        if isinstance(proxies, FaultProxy):
            proxies = ProxyCollection({proxies.name: proxies})
        self.proxies = proxies
        self.api = ToxiproxyApi(proxies)
        self.host = host
        self.port = port
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        return f"http://{format_address(self.host, self.port)}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._on_client, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            method, path, headers, body = await asyncio.wait_for(
                _read_request(reader), _READ_TIMEOUT_S
            )
            if headers.get("user-agent", "").startswith("Mozilla/"):
                raise ApiError(403, "User agent not allowed")
            status, payload = await self.api.handle(method, path, body)
        except ApiError as exc:
            status, payload = exc.status, exc.payload()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            writer.close()
            return
        except ConnectionError:
            writer.close()
            return
        data = b"" if status == 204 else json.dumps(payload).encode() + b"\n"
        phrase = HTTPStatus(status).phrase
        head = f"HTTP/1.1 {status} {phrase}\r\nConnection: close\r\n"
        if status != 204:
            head += f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n"
        with contextlib.suppress(ConnectionError):
            writer.write(head.encode() + b"\r\n" + data)
            await writer.drain()
        writer.close()


async def _read_request(reader: asyncio.StreamReader) -> tuple[str, str, dict[str, str], bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split()
    if len(parts) != 3:
        raise ApiError(400, "malformed request line")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip():
            headers[name.strip().lower()] = value.strip()
    if "chunked" in headers.get("transfer-encoding", "").lower():
        raise ApiError(411, "a Content-Length body is required")
    try:
        length = int(headers.get("content-length") or 0)
    except ValueError:
        raise ApiError(400, "bad Content-Length") from None
    if not 0 <= length <= _MAX_BODY:
        raise ApiError(413, "body too large")
    body = await reader.readexactly(length) if length else b""
    return parts[0].upper(), parts[1].split("?", 1)[0], headers, body
