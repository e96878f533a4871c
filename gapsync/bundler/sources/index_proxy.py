"""A loopback front for the package index while uv resolves: every project page uv reads passes
through gapsync's bounded reader first, and uv never sees the index credentials.

uv (the resolver) fetches the project pages of every candidate it considers, and would read an
81 MB page whole (5 s and 670 MB here) before gapsync's own capped read of the pages it keeps.
So ``resolve`` points uv at this proxy instead: a same-path reverse proxy for the index's origin
on 127.0.0.1 (a random port, for the length of one resolve). Pages (HTML and JSON) are read with
:func:`gapsync.upstream.read_capped` at ``MAX_INDEX_PAGE`` before a byte goes to uv; an answer
over the cap is cut off (uv fails) and remembered, so the resolve stops with gapsync's one line
naming the page, not uv's. Files (wheels, sdists, ``.metadata``) are streamed through as they
come. Requests go out through gapsync's session, so the credentials remembered for the index's
origin are added here, and uv is given a URL without them. Links to other hosts (PyPI's files
on files.pythonhosted.org) are not proxied: uv fetches them itself.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import requests

from gapsync.bundler.http import MAX_INDEX_PAGE, TIMEOUT, session
from gapsync.errors import UpstreamError
from gapsync.redact import redact_text, redact_url
from gapsync.upstream import CHUNK, read_capped

FORWARD_REQUEST = ("Accept", "Range", "If-None-Match", "If-Modified-Since", "Cache-Control")
FORWARD_RESPONSE = ("Content-Type", "ETag", "Last-Modified", "Cache-Control", "Content-Range", "Accept-Ranges",
                    "Location")
DOCUMENT_TYPES = ("text/html", "application/vnd.pypi.simple", "application/json", "text/plain", "application/xhtml")


class IndexProxy:
    """``with IndexProxy(index_url) as proxy:`` gives ``proxy.url`` (the index URL, on loopback)
    and, after uv fails, ``proxy.refused`` (why a page was cut off, one line each)."""

    def __init__(self, index_url: str):
        parts = urlsplit(index_url)
        self.origin = f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"
        self.refused: list[str] = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"  # one request per connection; bodies end at close

            def log_message(self, fmt: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                proxy._forward(self, "GET")

            def do_HEAD(self) -> None:
                proxy._forward(self, "HEAD")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}{parts.path or '/'}"
        self._thread = threading.Thread(target=self.server.serve_forever, name="gapsync-index-proxy", daemon=True)

    def __enter__(self) -> IndexProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _forward(self, h: BaseHTTPRequestHandler, method: str) -> None:
        url = self.origin + h.path
        headers = {k: h.headers[k] for k in FORWARD_REQUEST if h.headers.get(k)}
        try:
            r = session().request(method, url, headers=headers, stream=True, timeout=TIMEOUT)
        except requests.RequestException as e:
            self._fail(h, 502, f"{redact_url(url)}: {redact_text(str(e))}")
            return
        ctype = r.headers.get("Content-Type", "")
        try:
            if method == "HEAD" or r.status_code >= 300 or not ctype.startswith(DOCUMENT_TYPES):
                self._stream(h, r)
                return
            try:
                body = read_capped(r, MAX_INDEX_PAGE, redact_url(url))
            except UpstreamError as e:
                self.refused.append(str(e))
                self._fail(h, 403, str(e))  # a 4xx: uv gives up at once (a 5xx it retries with backoff)
                return
            self._head(h, r, len(body))
            h.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # uv went away
        finally:
            r.close()

    @staticmethod
    def _head(h: BaseHTTPRequestHandler, r: requests.Response, length: int | None) -> None:
        h.send_response(r.status_code)
        for k in FORWARD_RESPONSE:
            if r.headers.get(k):
                h.send_header(k, r.headers[k])
        if length is not None:
            h.send_header("Content-Length", str(length))
        h.end_headers()

    def _stream(self, h: BaseHTTPRequestHandler, r: requests.Response) -> None:
        encoded = r.headers.get("Content-Encoding", "identity").lower() not in ("", "identity")
        length = r.headers.get("Content-Length")
        self._head(h, r, int(length) if length and length.isdigit() and not encoded else None)
        if h.command == "HEAD":
            return
        while True:
            chunk = r.raw.read(CHUNK, decode_content=True)
            if not chunk:
                break
            h.wfile.write(chunk)

    @staticmethod
    def _fail(h: BaseHTTPRequestHandler, status: int, reason: str) -> None:
        body = reason.encode("utf-8", "replace")
        h.send_response(status)
        h.send_header("Content-Type", "text/plain; charset=utf-8")
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        if h.command != "HEAD":
            h.wfile.write(body)
