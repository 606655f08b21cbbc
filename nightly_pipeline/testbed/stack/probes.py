"""Readiness probes and port helpers, on raw sockets (no client library needed):
a PostgreSQL simple query over the v3 wire protocol (trust auth), a Redis PING,
an HTTP GET, and free/in-use checks for loopback ports."""

from __future__ import annotations

import http.client
import random
import socket
import struct
from pathlib import Path
from urllib.parse import urlsplit

import psutil

HOST = "127.0.0.1"


class PgWireError(Exception):
    def __init__(self, message: str, code: str = "") -> None:
        super().__init__(f"{message} [{code}]" if code else message)
        self.code = code


LISTEN_PORTS_FROM = 10_000
"""Listening ports are picked from here up to the kernel's ephemeral range."""
EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")


def free_port(host: str = HOST) -> int:
    """A loopback port free now, for a server started next, picked at random *below* the
    kernel's ephemeral range. A port from ``bind(0)`` comes from that range, which every
    outgoing connection draws from too: under load (thousands of client sockets) one of
    them took such a port between the pick and the server's bind (seen: PostgreSQL's
    "could not bind ... Address already in use"). Falls back to ``bind(0)``."""
    below = _ephemeral_start()
    if below - LISTEN_PORTS_FROM >= 1_000:
        for _ in range(100):  # bounded: a host with the whole range taken falls back
            port = random.randrange(LISTEN_PORTS_FROM, below)
            if _bindable(host, port):
                return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _ephemeral_start() -> int:
    try:
        return int(EPHEMERAL_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 0  # not Linux, or unreadable: bind(0) as before


def _bindable(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def port_in_use(port: int, host: str = HOST) -> str | None:
    """``None`` when ``port`` can be listened on, else a description of who holds it."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
            return None
        except OSError as exc:
            reason = exc.strerror or str(exc)
    try:
        for conn in psutil.net_connections("tcp"):
            listening = conn.status == psutil.CONN_LISTEN and conn.laddr
            if listening and conn.laddr.port == port and conn.pid:
                return f"{reason}; listening: pid {conn.pid} {psutil.Process(conn.pid).name()}"
    except (psutil.Error, OSError):
        pass
    return reason


def pg_query(
    port: int, sql: str, *, user: str, database: str, host: str = HOST, timeout: float = 2.0
) -> tuple[list[list[str | None]], dict[str, str]]:
    """Run one simple query; return (rows as text, server parameters). Trust auth only."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        params = f"user\0{user}\0database\0{database}\0\0".encode()
        sock.sendall(struct.pack("!II", 8 + len(params), 196608) + params)
        server: dict[str, str] = {}
        _pg_until_ready(sock, server, [], startup=True)
        body = sql.encode() + b"\0"
        sock.sendall(b"Q" + struct.pack("!I", 4 + len(body)) + body)
        rows: list[list[str | None]] = []
        _pg_until_ready(sock, server, rows)
        sock.sendall(b"X" + struct.pack("!I", 4))
        return rows, server


def _pg_until_ready(
    sock: socket.socket, server: dict[str, str], rows: list, *, startup: bool = False
) -> None:
    error: PgWireError | None = None
    while True:
        kind, payload = _pg_message(sock)
        if kind == b"R":
            (code,) = struct.unpack("!I", payload[:4])
            if code != 0:
                raise PgWireError(f"server asks for auth method {code}; expected trust")
        elif kind == b"S":
            name, value, _ = payload.split(b"\0", 2)
            server[name.decode()] = value.decode()
        elif kind == b"D":
            (ncols,) = struct.unpack("!H", payload[:2])
            pos, row = 2, []
            for _ in range(ncols):
                (size,) = struct.unpack("!i", payload[pos : pos + 4])
                pos += 4
                row.append(None if size < 0 else payload[pos : pos + size].decode())
                pos += max(size, 0)
            rows.append(row)
        elif kind == b"E":
            fields = dict((f[:1], f[1:].decode()) for f in payload.split(b"\0") if f)
            error = PgWireError(fields.get(b"M", "error"), fields.get(b"C", ""))
            if startup:
                raise error  # e.g. 57P03 "the database system is starting up": no Z follows
        elif kind == b"Z":
            if error is not None:
                raise error
            return


def _pg_message(sock: socket.socket) -> tuple[bytes, bytes]:
    head = _recv_exact(sock, 5)
    (length,) = struct.unpack("!I", head[1:])
    return head[:1], _recv_exact(sock, length - 4)


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("connection closed by the server")
        buf += chunk
    return bytes(buf)


def redis_ping(port: int, host: str = HOST, timeout: float = 2.0) -> bool:
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(b"*1\r\n$4\r\nPING\r\n")
        return sock.recv(64).startswith(b"+PONG")


def http_ok(url: str, timeout: float = 2.0) -> bool:
    parts = urlsplit(url)
    conn_cls = (
        http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    )
    conn = conn_cls(parts.hostname or HOST, parts.port, timeout=timeout)
    try:
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        conn.request("GET", target)
        return conn.getresponse().status == 200
    finally:
        conn.close()
