"""An upstream that lies in one chosen way: a package index, a registry with its token realm, or a
Hugging Face Hub API. 127.0.0.1 only; every request is logged (with its Authorization header)
so a test can assert where credentials went.

    python hostile_upstream.py PORT --mode MODE [--log FILE] [--realm URL] [--files DIR]

Why: real upstreams never send an 81 MB project page, a token that is a list or a realm on
another host, so gapsync's refusals can only be tested against one that does.

Index modes (``GET /simple/<project>/``; files from ``--files DIR`` under ``/files/``):

    huge-page            an 81 MB HTML page, streamed without Content-Length
    huge-page-length     the same with its Content-Length
    files-not-list       PEP 691 JSON whose ``files`` is an object
    missing-url          PEP 691 JSON with an entry without ``url``
    upper-sha            PEP 691 JSON with an upper-case sha256
    listed               PEP 691 JSON listing every file of --files DIR (honest; the names are the test's)
    listed-absolute      the same with absolute file URLs on this server's origin
    (``--require-auth USER:PASSWORD``: every /simple/ and /files/ request without that Basic
    credential answers 401, as a private index does)

Registry modes (``/v2/…``; the token endpoint is ``/token`` on this server):

    realm                every /v2/ request without a Bearer answers 401 with a Bearer realm of
                         ``--realm URL`` (``{port}`` in it: this server's port; default: this
                         server's own /token); with one, manifests are served (a tiny OCI manifest)
    token-list           the same, and /token answers ``{"token": ["a", "b"]}``
    token-huge           /token answers a 4 MB JSON document
    manifest-list        the manifest is a JSON list
    /token (any mode)    answers ``{"token": "t0k3n"}`` and logs the Authorization it got

Hub modes (``/api/models/<org>/<name>/revision/<rev>`` and ``…/tree/<commit>``):

    hub-file-and-dir     the listing has a file ``a`` and a file ``a/b``
    hub-huge             the tree listing is a 40 MB JSON array
    hub-bad-revision     model info answers a commit that is not 40 hex

MLflow mode (``/api/2.0/mlflow/…``):

    mlflow-huge          every REST answer is a 24 MB JSON object
"""

from __future__ import annotations

import argparse
import hashlib
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

COMMIT = "0123456789abcdef0123456789abcdef01234567"
MANIFEST = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                       "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                  "digest": "sha256:" + "0" * 64, "size": 2}, "layers": []}).encode()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("port", type=int)
    ap.add_argument("--mode", required=True)
    ap.add_argument("--log")
    ap.add_argument("--realm")
    ap.add_argument("--files")
    ap.add_argument("--require-auth")
    a = ap.parse_args()
    import base64

    want_auth = "Basic " + base64.b64encode(a.require_auth.encode()).decode() if a.require_auth else None
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt: str, *args: object) -> None:
            pass

        def _record(self, status: int) -> None:
            if a.log:
                with lock, open(a.log, "a") as f:
                    f.write(json.dumps({"time": time.time(), "method": self.command, "path": self.path,
                                        "host": self.headers.get("Host"),
                                        "authorization": self.headers.get("Authorization"), "status": status}) + "\n")

        def _send(self, status: int, body: bytes, ctype: str = "application/json", headers: dict | None = None) -> None:
            self._record(status)
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _stream(self, chunks, ctype: str, length: int | None) -> None:
            self._record(200)
            self.send_response(200)
            self.send_header("Content-Type", ctype)
            if length is not None:
                self.send_header("Content-Length", str(length))
            else:
                self.send_header("Connection", "close")
                self.close_connection = True
            self.end_headers()
            try:
                for c in chunks:
                    self.wfile.write(c)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client stopped reading: what a capped reader does

        def do_HEAD(self) -> None:
            self.do_GET()

        def do_POST(self) -> None:
            self.do_GET()

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/health":
                self._send(200, b"ok", "text/plain")
            elif path == "/token":
                self._token()
            elif want_auth and path.startswith(("/simple/", "/files/")) and self.headers.get("Authorization") != want_auth:
                self._send(401, b"credentials needed", "text/plain", headers={"WWW-Authenticate": 'Basic realm="index"'})
            elif path.startswith("/simple/"):
                self._index(path)
            elif path.startswith("/files/") and a.files:
                f = Path(a.files) / path.removeprefix("/files/")
                self._send(200, f.read_bytes(), "application/octet-stream") if f.is_file() else self._send(404, b"")
            elif path.startswith("/v2"):
                self._registry(path)
            elif path.startswith("/api/2.0/mlflow/") and a.mode == "mlflow-huge":
                self._send(200, json.dumps({"model_version": {"name": "m", "pad": "x" * (24 << 20)}}).encode())
            elif path.startswith("/api/"):
                self._hub(path)
            else:
                self._send(404, b"not found", "text/plain")

        # -- index ------------------------------------------------------------------------
        def _index(self, path: str) -> None:
            mode = a.mode
            if mode in ("huge-page", "huge-page-length"):
                row = b'<a href="../../files/x-1.0-py3-none-any.whl#sha256=' + b"0" * 64 + b'">x-1.0-py3-none-any.whl</a><br/>\n'
                n = (81 * 1000 * 1000) // len(row)
                head, tail = b"<!DOCTYPE html><html><body>\n", b"</body></html>\n"

                def gen():
                    yield head
                    block = row * 1000
                    for _ in range(n // 1000):
                        yield block
                    yield tail

                length = len(head) + len(row) * 1000 * (n // 1000) + len(tail)
                self._stream(gen(), "text/html", length if mode == "huge-page-length" else None)
                return
            project = path.removeprefix("/simple/").strip("/")
            files = []
            if mode in ("listed", "listed-absolute") and a.files:
                prefix = f"http://127.0.0.1:{a.port}/files/" if mode == "listed-absolute" else "../../files/"
                for f in sorted(Path(a.files).iterdir()):
                    files.append({"filename": f.name, "url": f"{prefix}{f.name}",
                                  "hashes": {"sha256": hashlib.sha256(f.read_bytes()).hexdigest()}})
            good = {"filename": f"{project}-1.0-py3-none-any.whl", "url": f"../../files/{project}-1.0-py3-none-any.whl",
                    "hashes": {"sha256": "ab" * 32}}
            doc: dict = {"meta": {"api-version": "1.0"}, "name": project}
            if mode == "files-not-list":
                doc["files"] = {"a": good}
            elif mode == "missing-url":
                doc["files"] = [{k: v for k, v in good.items() if k != "url"}]
            elif mode == "upper-sha":
                doc["files"] = [{**good, "hashes": {"sha256": "AB" * 32}}]
            else:
                doc["files"] = files
            self._send(200, json.dumps(doc).encode(), "application/vnd.pypi.simple.v1+json")

        # -- registry ---------------------------------------------------------------------
        def _token(self) -> None:
            if a.mode == "token-list":
                self._send(200, json.dumps({"token": ["a", "b"]}).encode())
            elif a.mode == "token-huge":
                self._send(200, json.dumps({"token": "t", "pad": "x" * (4 << 20)}).encode())
            else:
                self._send(200, json.dumps({"token": "t0k3n", "expires_in": 300}).encode())

        def _registry(self, path: str) -> None:
            if path in ("/v2", "/v2/"):
                self._send(200, b"{}")
                return
            if (self.headers.get("Authorization") or "") != "Bearer t0k3n":
                realm = (a.realm or "http://127.0.0.1:{port}/token").replace("{port}", str(a.port))
                self._send(401, b'{"errors":[{"code":"UNAUTHORIZED"}]}',
                           headers={"WWW-Authenticate": f'Bearer realm="{realm}",service="hostile",scope="repository:x:pull"'})
                return
            if "/manifests/" in path:
                body = b"[1, 2, 3]" if a.mode == "manifest-list" else MANIFEST
                self._send(200, body, "application/vnd.oci.image.manifest.v1+json",
                           headers={"Docker-Content-Digest": "sha256:" + hashlib.sha256(body).hexdigest()})
                return
            self._send(404, b'{"errors":[{"code":"BLOB_UNKNOWN"}]}')

        # -- hub --------------------------------------------------------------------------
        def _hub(self, path: str) -> None:
            parts = path.split("/")  # /api/models/org/name/(revision|tree)/...
            if len(parts) < 6 or parts[2] != "models":
                self._send(404, b"{}")
                return
            repo, kind = f"{parts[3]}/{parts[4]}", parts[5]
            if kind == "revision":
                sha = "not-a-commit" if a.mode == "hub-bad-revision" else COMMIT
                self._send(200, json.dumps({"id": repo, "modelId": repo, "sha": sha, "siblings": [], "tags": [],
                                            "private": False}).encode())
            elif kind == "tree":
                if a.mode == "hub-huge":
                    entry = json.dumps({"type": "file", "oid": "1" * 40, "size": 1, "path": "p" * 200}).encode()
                    n = (40 << 20) // (len(entry) + 1)
                    body = b"[" + b",".join([entry] * n) + b"]"
                    self._send(200, body)
                    return
                sha = hashlib.sha256(b"weights").hexdigest()
                entries = [{"type": "file", "oid": "1" * 40, "size": 7, "path": "a",
                            "lfs": {"oid": sha, "size": 7, "pointerSize": 130}},
                           {"type": "file", "oid": "2" * 40, "size": 7, "path": "a/b",
                            "lfs": {"oid": sha, "size": 7, "pointerSize": 130}}]
                self._send(200, json.dumps(entries).encode())
            else:
                self._send(404, b"{}")

    server = ThreadingHTTPServer(("127.0.0.1", a.port), Handler)
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()
