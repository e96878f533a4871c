"""A fault-injecting HTTP proxy for tests: 127.0.0.1 only, in front of one upstream server (a
real docker-registry), answering some requests badly on purpose.

    python fault_proxy.py PORT UPSTREAM_HOST:PORT --log FILE [--rules JSON]

Each request is matched against the rules in order; the first rule whose ``method`` and
``path`` (a regular expression searched in the path with its query) match, and whose budget is
not spent, decides what happens:

    {"method": "PUT", "path": "/blobs/uploads/.*digest=", "action": "500", "skip": 1, "times": 2}

``skip``: let this many matching requests through first; ``times``: then affect this many
(default 1; -1 for every one). Actions:

* ``500``: answer 500 without forwarding (the upstream never sees the request);
* ``500-after``: forward, then answer 500 (the upstream did the work, the client is told no);
* ``close``: forward, then close the connection without a byte of response;
* ``close-mid``: forward, send the status line, headers and half the body (or a Content-Length
  promising a body that never comes), then close;
* ``hang``: wait ``seconds`` (default 5), then forward as usual (a client with a shorter read
  timeout has given up by then).

The rules can be replaced while running: ``PUT /__proxy__/rules`` with a JSON list (budgets
start again). Every request is logged as one JSON line: ``n``, ``method``, ``path``,
``action`` (null when forwarded as is), ``status`` (what the client got; null if nothing) and
``upstream`` (the upstream's status; null if not forwarded or unreachable, when the client gets
502). Stopped by the test with SIGTERM.
"""

from __future__ import annotations

import argparse
import http.client
import json
import re
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer", "upgrade"}


class Rules:
    def __init__(self, rules: list[dict]):
        self.lock = threading.Lock()
        self.set(rules)

    def set(self, rules: list[dict]) -> None:
        with self.lock:
            self.rules = [dict(r, seen=0, used=0) for r in rules]

    def match(self, method: str, path: str) -> dict | None:
        with self.lock:
            for r in self.rules:
                if r.get("method", method) != method or not re.search(r.get("path", ""), path):
                    continue
                r["seen"] += 1
                if r["seen"] <= r.get("skip", 0):
                    return None  # this one passes; later ones may not
                times = r.get("times", 1)
                if times != -1 and r["used"] >= times:
                    continue
                r["used"] += 1
                return r
            return None


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("port", type=int)
    ap.add_argument("upstream")
    ap.add_argument("--log", required=True)
    ap.add_argument("--rules", default="[]")
    a = ap.parse_args()
    rules = Rules(json.loads(a.rules))
    up_host, _, up_port = a.upstream.rpartition(":")
    counter = iter(range(1, 1 << 62))
    log_lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *args):
            pass

        def _log(self, action, status, upstream) -> None:
            with log_lock, open(a.log, "a") as f:
                f.write(json.dumps({"n": next(counter), "time": time.time(), "method": self.command,
                                    "path": self.path, "action": action, "status": status, "upstream": upstream}) + "\n")

        def _body(self) -> bytes:
            n = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(n) if n else b""

        def _forward(self, body: bytes):
            """(status, headers, body) from the upstream, or None when it cannot be reached."""
            conn = http.client.HTTPConnection(up_host, int(up_port), timeout=60)
            try:
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP}
                conn.request(self.command, self.path, body=body or None, headers=headers)
                r = conn.getresponse()
                data = r.read()
                return r.status, [(k, v) for k, v in r.getheaders() if k.lower() not in HOP], data
            except OSError:
                return None
            finally:
                conn.close()

        def _send(self, status: int, headers, data: bytes) -> None:
            self.send_response(status)
            for k, v in headers:
                if k.lower() != "content-length":
                    self.send_header(k, v)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        def _abort(self) -> None:
            self.close_connection = True
            try:
                self.wfile.flush()
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

        def _handle(self) -> None:
            body = self._body()
            if self.path == "/__proxy__/rules" and self.command == "PUT":
                rules.set(json.loads(body))
                self._send(204, [], b"")
                return
            rule = rules.match(self.command, self.path)
            action = rule["action"] if rule else None
            if action == "500":
                self._send(500, [("Content-Type", "application/json")],
                           b'{"errors":[{"code":"UNKNOWN","message":"injected by fault_proxy"}]}')
                self._log(action, 500, None)
                return
            if action == "hang":
                time.sleep(float(rule.get("seconds", 5)))
            got = self._forward(body)
            if got is None:
                self._send(502, [], b"upstream unreachable")
                self._log(action, 502, None)
                return
            status, headers, data = got
            if action == "500-after":
                self._send(500, [], b"injected by fault_proxy after forwarding")
                self._log(action, 500, status)
            elif action == "close":
                self._abort()
                self._log(action, None, status)
            elif action == "close-mid":
                self.send_response(status)
                for k, v in headers:
                    if k.lower() != "content-length":
                        self.send_header(k, v)
                self.send_header("Content-Length", str(max(len(data), 64)))
                self.end_headers()
                self.wfile.write(data[: len(data) // 2])
                self._abort()
                self._log(action, None, status)
            else:
                try:
                    self._send(status, headers, data)
                except OSError:  # the client went away (it timed out during a hang)
                    self.close_connection = True
                self._log(action, status, status)

        do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = _handle

    server = ThreadingHTTPServer(("127.0.0.1", a.port), Handler)
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()
