"""`gapsync serve` on a host name that resolves to two addresses (``localhost`` as 127.0.0.1 and
::1, as a stock Debian /etc/hosts has it): waitress then listens on each address under a
MultiSocketServer, and every listening socket must get the strict request parser (request
smuggling refused) and the request-head deadline (slowloris), not only the first.

The name is answered by a resolver wrapper (this machine's /etc/hosts gives localhost one
address); the server, its sockets and the clients are real."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from gapsync.mirror.serve import make_server
from tests.support.raw_http import read_reply
from tests.support.servers import free_port

DUAL = "dual-stack.gapsync.test"


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.fixture
def dual_server(tmp_path, monkeypatch):
    if not _has_ipv6_loopback():
        pytest.skip("no IPv6 loopback on this machine")
    real = socket.getaddrinfo

    def getaddrinfo(host, port, *args, **kwargs):
        if host == DUAL:
            return real("127.0.0.1", port, *args, **kwargs) + real("::1", port, *args, **kwargs)
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    (tmp_path / "pypi/simple").mkdir(parents=True)
    port = free_port()
    server = make_server(tmp_path, DUAL, port, header_timeout=1)
    assert len(getattr(server, "effective_listen", [])) == 2, "the name did not give two listening sockets"
    t = threading.Thread(target=server.run, daemon=True)
    t.start()
    yield port
    server.close()
    t.join(10)


@pytest.mark.parametrize("addr", ["127.0.0.1", "::1"])
def test_every_address_refuses_length_and_chunked_together(dual_server, addr):
    smuggled = b"GET /simple/ HTTP/1.1\r\nHost: x\r\n\r\n"
    body = b"0\r\n\r\n"
    req = (b"POST /simple/ HTTP/1.1\r\nHost: x\r\nContent-Length: " + str(len(body) + len(smuggled)).encode()
           + b"\r\nTransfer-Encoding: chunked\r\n\r\n" + body + smuggled)
    with socket.create_connection((addr, dual_server), timeout=10) as c:
        c.sendall(req)
        r = read_reply(c)
        assert r.status == 400, r.head
        rest = b""
        while chunk := c.recv(65536):
            rest += chunk
        assert b"HTTP/1.1 200" not in rest, rest[:200]


@pytest.mark.parametrize("addr", ["127.0.0.1", "::1"])
def test_every_address_closes_a_slow_request_head(dual_server, addr):
    with socket.create_connection((addr, dual_server), timeout=30) as c:
        c.sendall(b"GET /simple/ HTTP/1.1\r\nHo")
        deadline = time.monotonic() + 15
        closed = False
        while time.monotonic() < deadline and not closed:
            try:
                c.sendall(b"s")  # still trickling
                c.settimeout(0.5)
                closed = c.recv(100) == b""
            except TimeoutError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                closed = True
        assert closed, f"{addr}: a request head trickling for 15 s was not closed (header timeout 1 s)"
