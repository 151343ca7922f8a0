"""Slow and abusive HTTP clients on loopback: raw sockets that send part of a request and wait."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator
from contextlib import contextmanager

SLOW_HEADER = b"GET /v1/system/ping HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: slow"
SLOW_BODY = (
    b"POST /api/v1/datasets HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    b'Content-Length: 1000\r\n\r\n{"name": "sl'
)


def huge_declared_body(length: int) -> bytes:
    """An upload that declares `length` bytes and sends a few."""
    return (
        b"POST /api/v1/datasets/x/documents HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: application/octet-stream\r\n"
        + f"Content-Length: {length}\r\n\r\n".encode()
        + b"x" * 100
    )


@contextmanager
def held_connections(port: int, payload: bytes, count: int) -> Iterator[list[socket.socket]]:
    """`count` connections that each sent `payload` and then stay silent; closed on exit."""
    held: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.create_connection(("127.0.0.1", port), timeout=10)
            sock.sendall(payload)
            held.append(sock)
        yield held
    finally:
        for sock in held:
            with contextlib.suppress(OSError):
                sock.close()


def read_answer(sock: socket.socket, timeout: float) -> bytes:
    """Whatever the server sends before it closes the connection (bounded by timeout)."""
    sock.settimeout(timeout)
    chunks = []
    with contextlib.suppress(OSError):
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)
