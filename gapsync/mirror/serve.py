"""``gapsync serve``: the mirror, read-only, over HTTP.

``/simple/`` answers PEP 691 JSON or PEP 503 HTML by the client's ``Accept`` header (pip and uv
prefer JSON), ``/files/`` serves the files. GET and HEAD only; every path is resolved inside the
mirror's ``pypi`` directory, and anything else is a 404.
"""

from __future__ import annotations

import os
import re
import shutil
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

from packaging.utils import canonicalize_name

from gapsync import __version__

JSON_TYPE = "application/vnd.pypi.simple.v1+json"
HTML_TYPES = ("application/vnd.pypi.simple.v1+html", "text/html")


def negotiate(accept: str | None) -> str:
    """Pick JSON or HTML by q-value, as PEP 691 describes; HTML when nothing is said."""
    if not accept:
        return "text/html"
    best, best_q = "text/html", -1.0
    for part in accept.split(","):
        fields = [f.strip() for f in part.split(";")]
        mtype, q = fields[0].lower(), 1.0
        for f in fields[1:]:
            if f.startswith("q="):
                try:
                    q = float(f[2:])
                except ValueError:
                    q = 0.0
        if mtype in (JSON_TYPE, "application/vnd.pypi.simple.latest+json"):
            cand = JSON_TYPE
        elif mtype in (*HTML_TYPES, "application/vnd.pypi.simple.latest+html", "*/*", "text/*"):
            cand = "application/vnd.pypi.simple.v1+html" if "vnd.pypi" in mtype else "text/html"
        else:
            continue
        if q > best_q:
            best, best_q = cand, q
    return best


class MirrorHandler(BaseHTTPRequestHandler):
    server_version = f"gapsync/{__version__}"
    root: Path  # MIRROR/pypi, set by make_server

    def log_message(self, fmt, *args):  # quiet unless asked
        if getattr(self.server, "verbose", False):
            super().log_message(fmt, *args)

    def do_HEAD(self):
        self._handle(head=True)

    def do_GET(self):
        self._handle(head=False)

    def _send_file(self, path: Path, ctype: str, head: bool) -> None:
        try:
            f = path.open("rb")
        except OSError:
            self.send_error(HTTPStatus.NOT_FOUND)
            return
        with f:
            size = os.fstat(f.fileno()).st_size
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(size))
            self.send_header("Cache-Control", "max-age=60")
            self.end_headers()
            if not head:
                shutil.copyfileobj(f, self.wfile, 1 << 20)

    def _handle(self, head: bool) -> None:
        path = unquote(urlsplit(self.path).path)
        if "\0" in path or "/../" in f"{path}/" or "\\" in path:
            self.send_error(HTTPStatus.NOT_FOUND)
            return
        if path in ("/", ""):
            self.send_response(HTTPStatus.FOUND)
            self.send_header("Location", "/simple/")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if path.startswith("/simple"):
            return self._simple(path, head)
        m = re.match(r"^/files/([^/]+)$", path)
        if m and not m.group(1).startswith("."):
            name = m.group(1)
            ctype = "application/octet-stream" if not name.endswith(".metadata") else "text/plain; charset=utf-8"
            return self._send_file(self.root / "files" / name, ctype, head)
        self.send_error(HTTPStatus.NOT_FOUND)

    def _simple(self, path: str, head: bool) -> None:
        ctype = negotiate(self.headers.get("Accept"))
        fname = "index.json" if ctype == JSON_TYPE else "index.html"
        if path in ("/simple", "/simple/"):
            if path == "/simple":
                return self._redirect("/simple/")
            return self._send_file(self.root / "simple" / fname, ctype, head)
        m = re.match(r"^/simple/([^/]+)/?$", path)
        if not m:
            return self.send_error(HTTPStatus.NOT_FOUND)
        normalized = canonicalize_name(m.group(1))
        if m.group(1) != normalized or not path.endswith("/"):
            return self._redirect(f"/simple/{normalized}/")
        self._send_file(self.root / "simple" / normalized / fname, ctype + ("; charset=utf-8" if "html" in ctype else ""), head)

    def _redirect(self, location: str) -> None:
        self.send_response(HTTPStatus.MOVED_PERMANENTLY)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()


def make_server(mirror: Path, host: str, port: int, verbose: bool = False) -> ThreadingHTTPServer:
    handler = type("BoundMirrorHandler", (MirrorHandler,), {"root": mirror / "pypi"})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    server.verbose = verbose  # type: ignore[attr-defined]
    return server
