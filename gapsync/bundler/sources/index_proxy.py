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
origin are added here, and uv is given a URL without them. Absolute links on the index's own
origin are rewritten to the proxy (so files there get the credentials too); links to other hosts
(PyPI's files on files.pythonhosted.org) are not proxied: uv fetches them itself.
"""

from __future__ import annotations

import queue
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import requests

from gapsync.bundler.http import MAX_INDEX_PAGE, TIMEOUT, new_session
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
        self.broken: list[str] = []  # answers that broke off while streamed (for messages only)
        # sessions kept between requests (each handler thread borrows one): connections to the
        # index are reused, as uv's own would be, instead of a TLS handshake per page
        self._sessions: queue.LifoQueue[requests.Session] = queue.LifoQueue()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive: uv reuses its connections (bodies sized or chunked)

            def log_message(self, fmt: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                proxy._forward(self, "GET")

            def do_HEAD(self) -> None:
                proxy._forward(self, "HEAD")

        class Server(ThreadingHTTPServer):
            request_queue_size = 256  # uv opens tens of connections at once: the default backlog of 5 drops them
            daemon_threads = True

            def handle_error(self, request, client_address) -> None:
                pass  # a broken connection is uv's to report; never a traceback on gapsync's stderr

        self.server = Server(("127.0.0.1", 0), Handler)
        self.local = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.url = f"{self.local}{parts.path or '/'}"
        self._thread = threading.Thread(target=self.server.serve_forever, name="gapsync-index-proxy", daemon=True)

    def __enter__(self) -> IndexProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        while not self._sessions.empty():
            self._sessions.get_nowait().close()

    def _forward(self, h: BaseHTTPRequestHandler, method: str) -> None:
        url = self.origin + h.path
        headers = {k: h.headers[k] for k in FORWARD_REQUEST if h.headers.get(k)}
        try:
            s = self._sessions.get_nowait()
        except queue.Empty:
            s = new_session()
        try:
            self._forward_with(s, h, method, url, headers)
        except Exception as e:  # the upstream broke off mid-answer (urllib3, socket or decoding errors)
            h.close_connection = True  # uv sees a short answer and fails; the resolve's error says why
            self.broken.append(f"{redact_url(url)}: {redact_text(str(e))[:200]}")
        finally:
            self._sessions.put(s)

    def _forward_with(self, s: requests.Session, h: BaseHTTPRequestHandler, method: str, url: str,
                      headers: dict[str, str]) -> None:
        try:
            r = s.request(method, url, headers=headers, stream=True, timeout=TIMEOUT)
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
            # absolute links on the index's own origin (Artifactory, Nexus) come through here too,
            # so their files get the index's credentials; other hosts' links are left alone
            body = body.replace(self.origin.encode() + b"/", self.local.encode() + b"/")
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
        elif h.command != "HEAD":
            h.send_header("Transfer-Encoding", "chunked")
        h.end_headers()

    def _stream(self, h: BaseHTTPRequestHandler, r: requests.Response) -> None:
        encoded = r.headers.get("Content-Encoding", "identity").lower() not in ("", "identity")
        length = r.headers.get("Content-Length")
        size = int(length) if length and length.isdigit() and not encoded else None
        self._head(h, r, size)
        if h.command == "HEAD":
            return
        sent = 0
        while True:
            chunk = r.raw.read(CHUNK, decode_content=True)
            if not chunk:
                break
            sent += len(chunk)
            h.wfile.write(chunk if size is not None else b"%x\r\n%b\r\n" % (len(chunk), chunk))
        if size is None:
            h.wfile.write(b"0\r\n\r\n")
        elif sent != size:  # the upstream broke off: the client must not take a short body as whole
            h.close_connection = True

    @staticmethod
    def _fail(h: BaseHTTPRequestHandler, status: int, reason: str) -> None:
        body = reason.encode("utf-8", "replace")
        h.send_response(status)
        h.send_header("Content-Type", "text/plain; charset=utf-8")
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        if h.command != "HEAD":
            h.wfile.write(body)
