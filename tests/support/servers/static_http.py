"""A static file server for tests: 127.0.0.1 only, HTTP Range, optional latency, request log.

    python static_http.py DIR PORT [--latency SECONDS] [--log FILE] [--lie NAME]

``--lie NAME`` serves the file NAME with its last byte flipped (an upstream that serves bytes
other than the ones its index announced). Stopped by the test with SIGTERM.
"""

from __future__ import annotations

import argparse
import os
import time
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("root")
    ap.add_argument("port", type=int)
    ap.add_argument("--latency", type=float, default=0.0)
    ap.add_argument("--log")
    ap.add_argument("--lie", action="append", default=[])
    a = ap.parse_args()

    class Handler(SimpleHTTPRequestHandler):
        def __init__(self, *args, **kw):
            super().__init__(*args, directory=a.root, **kw)

        def log_message(self, fmt, *args):
            if a.log:
                with open(a.log, "a") as f:
                    f.write(f"{self.command} {self.path} range={self.headers.get('Range')}\n")

        def do_GET(self):
            if a.latency:
                time.sleep(a.latency)
            path = self.translate_path(self.path)
            name = os.path.basename(path)
            rng = self.headers.get("Range")
            if os.path.isfile(path) and (rng or name in a.lie):
                data = open(path, "rb").read()
                if name in a.lie:
                    data = data[:-1] + bytes([data[-1] ^ 1])
                start = 0
                if rng and rng.startswith("bytes=") and rng.endswith("-"):
                    start = int(rng[6:-1])
                if start >= len(data) and rng:
                    self.send_response(416)
                    self.end_headers()
                    self.log_message("")
                    return
                self.send_response(206 if rng else 200)
                if rng:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.send_header("Content-Length", str(len(data) - start))
                self.end_headers()
                self.wfile.write(data[start:])
                self.log_message("")
                return
            super().do_GET()

    ThreadingHTTPServer(("127.0.0.1", a.port), Handler).serve_forever()


if __name__ == "__main__":
    main()
