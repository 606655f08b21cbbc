"""The fault proxy's HTTP/JSON control endpoint (loopback only, one request per connection).

    GET    /status              links open/total/rejected, bytes each way, cut, faults
    POST   /cut                 close every link and refuse new ones
    POST   /restore             accept again
    GET    /faults              installed faults
    POST   /faults              {"name", "type", "direction", "toxicity", "params"}: install
    DELETE /faults/{name}       remove

Answers are JSON; errors are ``{"error": "..."}`` with 400/404/405/409.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from http import HTTPStatus
from typing import Any

from nightly_pipeline.chaos.faults import FaultSlot, build_fault
from nightly_pipeline.chaos.proxy import FaultProxy, ProxyStateError

_MAX_BODY = 64 * 1024
_READ_TIMEOUT_S = 5.0


class _HttpError(Exception):
    def __init__(self, status: HTTPStatus, message: str) -> None:
        super().__init__(message)
        self.status = status


class ControlServer:
    def __init__(self, proxy: FaultProxy, host: str = "127.0.0.1", port: int = 0) -> None:
        self.proxy = proxy
        self.host = host
        self.port = port
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._on_client, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            method, path, body = await asyncio.wait_for(_read_request(reader), _READ_TIMEOUT_S)
            status, payload = HTTPStatus.OK, await self._route(method, path, body)
        except _HttpError as exc:
            status, payload = exc.status, {"error": str(exc)}
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
            writer.close()
            return
        data = json.dumps(payload).encode()
        head = (
            f"HTTP/1.1 {status.value} {status.phrase}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n"
        )
        with contextlib.suppress(ConnectionError):
            writer.write(head.encode() + data)
            await writer.drain()
        writer.close()

    async def _route(self, method: str, path: str, body: bytes) -> dict[str, Any]:
        proxy = self.proxy
        if path == "/status" and method == "GET":
            return proxy.status()
        if path == "/cut" and method == "POST":
            await proxy.cut()
            return proxy.status()
        if path == "/restore" and method == "POST":
            try:
                await proxy.restore()
            except ProxyStateError as exc:
                raise _HttpError(HTTPStatus.CONFLICT, str(exc)) from exc
            return proxy.status()
        if path == "/faults" and method == "GET":
            return {"faults": [slot.describe() for slot in proxy.faults()]}
        if path == "/faults" and method == "POST":
            proxy.add_fault(_slot_from_json(body))
            return {"faults": [slot.describe() for slot in proxy.faults()]}
        if path.startswith("/faults/") and method == "DELETE":
            name = path.removeprefix("/faults/")
            if not proxy.remove_fault(name):
                raise _HttpError(HTTPStatus.NOT_FOUND, f"no fault named {name!r}")
            return {"faults": [slot.describe() for slot in proxy.faults()]}
        if path in {"/status", "/cut", "/restore", "/faults"} or path.startswith("/faults/"):
            raise _HttpError(HTTPStatus.METHOD_NOT_ALLOWED, f"{method} not allowed on {path}")
        raise _HttpError(HTTPStatus.NOT_FOUND, f"no route {path}")


def _slot_from_json(body: bytes) -> FaultSlot:
    try:
        spec = json.loads(body or b"{}")
        if not isinstance(spec, dict):
            raise ValueError("the body must be a JSON object")
        fault = build_fault(str(spec.get("type", "")), spec.get("params") or {})
        return FaultSlot(
            name=str(spec.get("name") or spec.get("type", "")),
            fault=fault,
            direction=spec.get("direction", "downstream"),
            toxicity=float(spec.get("toxicity", 1.0)),
        )
    except (ValueError, TypeError) as exc:
        raise _HttpError(HTTPStatus.BAD_REQUEST, str(exc)) from exc


async def _read_request(reader: asyncio.StreamReader) -> tuple[str, str, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split()
    if len(parts) != 3:
        raise _HttpError(HTTPStatus.BAD_REQUEST, "malformed request line")
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value.strip() or 0)
    if length > _MAX_BODY:
        raise _HttpError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "body too large")
    body = await reader.readexactly(length) if length else b""
    return parts[0].upper(), parts[1].split("?", 1)[0], body
