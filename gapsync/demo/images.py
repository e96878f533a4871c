"""Two tiny OCI images that share a base layer, written as an OCI layout without an engine.

Layers are gzip tars with every timestamp 0, so the digests are the same on every run and
the cache of a second demo run already holds them.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from pathlib import Path

from gapsync.oci import OCI_INDEX, OCI_MANIFEST, REF_NAME


def _layer(files: dict[str, bytes]) -> tuple[bytes, str]:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, data in sorted(files.items()):
            ti = tarfile.TarInfo(name)
            ti.size, ti.mtime, ti.mode = len(data), 0, 0o644
            tf.addfile(ti, io.BytesIO(data))
    tar = raw.getvalue()
    gz = io.BytesIO()
    with gzip.GzipFile(fileobj=gz, mode="wb", mtime=0) as g:
        g.write(tar)
    return gz.getvalue(), "sha256:" + hashlib.sha256(tar).hexdigest()


def _put(blobs: Path, data: bytes) -> dict:
    digest = hashlib.sha256(data).hexdigest()
    (blobs / digest).write_bytes(data)
    return {"digest": f"sha256:{digest}", "size": len(data)}


def build_demo_layout(root: Path, arch: str = "amd64") -> list[str]:
    """Write the layout; return the ref names (``app-one``, ``app-two``)."""
    blobs = root / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    base, base_diff = _layer({"etc/os-release": b"NAME=gapsync-demo-base\n", "bin/README": b"a shared base layer\n"})
    entries = []
    for name, text in (("app-one", b"print('one')\n"), ("app-two", b"print('two')\n")):
        own, own_diff = _layer({f"app/{name}.py": text})
        config = json.dumps({"architecture": arch, "os": "linux", "config": {"Cmd": ["/app/" + name]},
                             "rootfs": {"type": "layers", "diff_ids": [base_diff, own_diff]}}).encode()
        layers = [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", **_put(blobs, b)} for b in (base, own)]
        manifest = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                               "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **_put(blobs, config)},
                               "layers": layers}).encode()
        entries.append({"mediaType": OCI_MANIFEST, **_put(blobs, manifest), "annotations": {REF_NAME: name}})
    (root / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    (root / "index.json").write_text(json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}))
    return ["app-one", "app-two"]
