"""A static file server for the benchmarks that adds a fixed latency to every request.

It stands in for a remote index (PyPI and its CDN) in the cold-download benchmark: a threaded
HTTP/1.1 server (keep-alive, so clients may reuse connections) on 127.0.0.1 that sleeps
``--latency`` seconds before it answers each request, then serves files from ``--dir`` like
``python -m http.server`` (no Range support). One line per request goes to stdout
(``METHOD PATH STATUS BYTES``, the body bytes actually sent), so the bench can count what each
client asked for and received.

    python bench/_latency_server.py --dir INDEX_ROOT --port 8123 --latency 0.05
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer


class LatencyHandler(SimpleHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    latency = 0.05

    def handle_one_request(self):
        # sleep once the request line has arrived, before answering (one round trip per request)
        self.raw_requestline = self.rfile.readline(65537)
        if not self.raw_requestline:
            self.close_connection = True
            return
        time.sleep(self.latency)
        if not self.parse_request():
            return
        method = getattr(self, "do_" + self.command, None)
        if method is None:
            self.send_error(501, f"Unsupported method ({self.command!r})")
            return
        self._code, self._sent = "-", 0
        try:
            method()
            self.wfile.flush()
        finally:  # also when the client hangs up mid-body: log the bytes that went out
            sys.stdout.write(f"{self.command} {self.path} {self._code} {self._sent}\n")
            sys.stdout.flush()

    def copyfile(self, source, outputfile):
        while chunk := source.read(1 << 16):
            outputfile.write(chunk)
            self._sent += len(chunk)

    def log_request(self, code="-", size="-"):
        self._code = getattr(code, "value", code)

    def log_message(self, format, *args):  # noqa: A002 - the signature of the base class
        pass


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--latency", type=float, default=0.05, help="seconds added to every request")
    a = ap.parse_args()
    LatencyHandler.latency = a.latency
    handler = functools.partial(LatencyHandler, directory=a.dir)
    ThreadingHTTPServer.daemon_threads = True
    # socketserver's default listen backlog is 5: a client that opens 40 connections at once
    # (uv does) would see dropped SYNs and 1 s retransmits, which no real index causes
    ThreadingHTTPServer.request_queue_size = 256
    with ThreadingHTTPServer(("127.0.0.1", a.port), handler) as srv:
        srv.serve_forever()


if __name__ == "__main__":
    main()
