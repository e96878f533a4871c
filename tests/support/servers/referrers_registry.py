"""A small OCI registry with the OCI 1.1 referrers API, serving an image layout. 127.0.0.1 only.

    python referrers_registry.py LAYOUT_DIR PORT [--mode honest|wrong-subject]

Why: Debian's docker-registry (distribution 2.8) has no referrers API, so the path where
gapsync finds signatures and attestations through ``/v2/<name>/referrers/<digest>`` needs a
registry that offers it. Manifests resolve by the layout's ``org.opencontainers.image.ref.name``
(``repository:tag``) or by digest; blobs by digest. ``referrers/<digest>`` answers an image index
of every manifest in the layout whose ``subject`` is that digest (``honest``), or lists every
manifest that has a subject, whatever it names (``wrong-subject``: a registry that lies).
Stopped by the test with SIGTERM.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

INDEX = "application/vnd.oci.image.index.v1+json"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("layout")
    ap.add_argument("port", type=int)
    ap.add_argument("--mode", default="honest", choices=("honest", "wrong-subject"))
    a = ap.parse_args()
    root = Path(a.layout)

    def blob(digest: str) -> bytes | None:
        m = re.fullmatch(r"sha256:([0-9a-f]{64})", digest)
        p = root / "blobs" / "sha256" / m.group(1) if m else None
        return p.read_bytes() if p and p.is_file() else None

    def manifests() -> list[dict]:
        return json.loads((root / "index.json").read_text())["manifests"]

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, fmt, *args):
            pass

        def send(self, status: int, body: bytes, ctype: str = "application/json", digest: str | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Docker-Distribution-API-Version", "registry/2.0")
            if digest:
                self.send_header("Docker-Content-Digest", digest)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def do_HEAD(self):
            self.do_GET()

        def do_GET(self):
            path = self.path.split("?", 1)[0]
            if path in ("/v2", "/v2/"):
                return self.send(200, b"{}")
            m = re.fullmatch(r"/v2/(.+)/(manifests|blobs|referrers)/([^/]+)", path)
            if not m:
                return self.send(404, b'{"errors":[{"code":"NAME_UNKNOWN"}]}')
            name, kind, ref = m.groups()
            if kind == "blobs":
                data = blob(ref)
                return self.send(200, data, "application/octet-stream", ref) if data is not None else \
                    self.send(404, b'{"errors":[{"code":"BLOB_UNKNOWN"}]}')
            if kind == "referrers":
                found = []
                for d in manifests():
                    doc = json.loads(blob(d["digest"]) or b"{}")
                    subject = (doc.get("subject") or {}).get("digest")
                    if subject and (subject == ref or a.mode == "wrong-subject"):
                        found.append({"mediaType": d["mediaType"], "digest": d["digest"], "size": d["size"],
                                      **({"artifactType": doc["artifactType"]} if "artifactType" in doc else {})})
                return self.send(200, json.dumps({"schemaVersion": 2, "mediaType": INDEX, "manifests": found}).encode(), INDEX)
            for d in manifests():
                if d["digest"] == ref or d.get("annotations", {}).get("org.opencontainers.image.ref.name") == f"{name}:{ref}":
                    data = blob(d["digest"])
                    return self.send(200, data, d["mediaType"], "sha256:" + hashlib.sha256(data).hexdigest())
            return self.send(404, b'{"errors":[{"code":"MANIFEST_UNKNOWN"}]}')

    ThreadingHTTPServer(("127.0.0.1", a.port), Handler).serve_forever()


if __name__ == "__main__":
    main()
