"""Raw HTTP/1.1 over a socket, for requests no client library would send (and replies read as
they come, head first): what hostile clients of ``gapsync serve`` do."""

from __future__ import annotations

import socket


class Reply:
    def __init__(self, status: int, head: bytes, headers: dict[str, str], body: bytes):
        self.status, self.head, self.headers, self.body = status, head, headers, body

    def header_names(self) -> list[str]:
        return [ln.split(b":", 1)[0].strip().lower().decode("latin-1") for ln in self.head.split(b"\r\n")[1:]]


def read_reply(s: socket.socket, head_only: bool = False) -> Reply:
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(65536)
        if not chunk:
            raise ConnectionError(f"connection closed after {buf[:200]!r}")
        buf += chunk
    head, _, body = buf.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for ln in lines[1:]:
        k, _, v = ln.decode("latin-1").partition(":")
        headers[k.strip().lower()] = v.strip()
    n = 0 if head_only else int(headers.get("content-length", "0"))
    while len(body) < n:
        chunk = s.recv(min(1 << 20, n - len(body)))
        if not chunk:
            break
        body += chunk
    return Reply(status, head, headers, body)


def raw(port: int, request: bytes, timeout: float = 10) -> Reply:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(request)
        return read_reply(s, head_only=request.startswith(b"HEAD "))


def get(port: int, target: str, method: str = "GET", headers: dict[str, str] | None = None) -> Reply:
    extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    return raw(port, f"{method} {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{extra}\r\n".encode("latin-1"))
