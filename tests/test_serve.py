"""`gapsync serve` is read-only and answers nothing outside the index."""

from __future__ import annotations

import http.client

import pytest

from tests.support.cli import GAPSYNC, cli
from tests.support.servers import Server, free_port


@pytest.fixture(scope="module")
def server(world, tmp_path_factory):
    m = tmp_path_factory.mktemp("srv") / "mirror"
    assert cli("trust", "pin", world.root, "--mirror", m).code == 0
    assert cli("import", world.b1, "--mirror", m).code == 0
    port = free_port()
    s = Server([GAPSYNC, "serve", "--mirror", str(m), "--listen", f"127.0.0.1:{port}"], f"http://127.0.0.1:{port}/simple/")
    yield port
    s.stop()


def request(port, method, path, headers=None):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    c.putrequest(method, path, skip_accept_encoding=True)
    for k, v in (headers or {}).items():
        c.putheader(k, v)
    c.endheaders()
    r = c.getresponse()
    body = r.read()
    c.close()
    return r.status, dict(r.getheaders()), body


@pytest.mark.parametrize("path", [
    "/files/../.gapsync/audit.log", "/files/%2e%2e/.gapsync/audit.log", "/simple/../../.gapsync/audit.log",
    "/.gapsync/audit.log", "/files/.hidden", "/files/x%00y", "/simple/alpha/../../../etc/passwd", "/pypi/files/",
    "/simple/nope/",
])
def test_paths_outside_the_index_are_404(server, path):
    status, _, body = request(server, "GET", path)
    assert status in (400, 404) and b"seq" not in body  # 400: a NUL or control character in the path


def test_read_only_methods(server):
    for method in ("POST", "PUT", "DELETE"):
        status, headers, _ = request(server, method, "/simple/")
        assert status == 405 and headers["Allow"] == "GET, HEAD"
    status, headers, body = request(server, "HEAD", "/files/alpha-1.0-py3-none-any.whl")
    assert status == 200 and int(headers["Content-Length"]) > 0 and body == b""


def test_content_negotiation_prefers_json_by_quality(server):
    _, h, _ = request(server, "GET", "/simple/alpha/", {"Accept": "text/html;q=0.9, application/vnd.pypi.simple.v1+json;q=0.1"})
    assert h["Content-Type"].startswith("text/html")
    _, h, _ = request(server, "GET", "/simple/alpha/", {"Accept": "application/vnd.pypi.simple.v1+json, text/html;q=0.01"})
    assert h["Content-Type"] == "application/vnd.pypi.simple.v1+json"
    status, h, _ = request(server, "GET", "/")
    assert status == 302 and h["Location"] == "/simple/"
