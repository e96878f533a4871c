"""Images that live in no registry: an OCI image layout directory, or a local Docker engine.

Both end as an image in the content-addressed cache, named as the spec says (``as:``), so the
rest of the pipeline treats them like pulled images. Nothing is extracted: layout blobs are
copied into the cache with their digest checked; a ``docker save`` archive is read member by
member (the engine's ``manifest.json``, config and layer tars, in both the legacy and the
Docker 25+ format) and turned into an OCI manifest whose layers are the uncompressed tars.
"""

from __future__ import annotations

import hashlib
import json
import re
import tarfile
import tempfile
from pathlib import Path
from typing import Any, BinaryIO, cast

from gapsync.bundler.cache import BlobCache
from gapsync.bundler.fetch import FetchItem
from gapsync.bundler.sources.oci import Origin
from gapsync.errors import DigestMismatchError, FetchError, InputError
from gapsync.hashing import read_chunks
from gapsync.oci import OCI_MANIFEST, REF_NAME, ImageRef, hex_of
from gapsync.oci_client import Manifest

OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"


class LayoutSource:
    """An OCI image layout directory (what ``skopeo copy … oci:DIR:REF`` or ``umoci`` write)."""

    def __init__(self, path: Path, ref: str):
        self.path, self.ref = path, ref
        if not (path / "index.json").is_file():
            raise InputError(f"{path}: not an OCI image layout (no index.json)")

    def top(self) -> tuple[str, str]:
        """(digest, media type) of the reference: a ref.name annotation or a digest."""
        index = json.loads((self.path / "index.json").read_text())
        for m in index.get("manifests", []):
            if m.get("annotations", {}).get(REF_NAME) == self.ref or m.get("digest") == self.ref:
                return m["digest"], m["mediaType"]
        names = sorted(m.get("annotations", {}).get(REF_NAME, "?") for m in index.get("manifests", []))
        raise InputError(f"{self.path}: no image {self.ref!r} in the layout (it has {names})")

    def blob(self, digest: str) -> Path:
        p = self.path / "blobs" / "sha256" / hex_of(digest)
        if not p.is_file():
            raise FetchError(f"{self.path}: blob {digest} is missing from the layout")
        return p

    def manifest_bytes(self, digest: str) -> bytes:
        data = self.blob(digest).read_bytes()
        if "sha256:" + hashlib.sha256(data).hexdigest() != digest:
            raise DigestMismatchError(f"{self.path}: manifest {digest} does not match its bytes")
        return data

    def copy_into(self, cache: BlobCache, digest: str, size: int | None) -> None:
        if cache.has(hex_of(digest)):
            return
        with self.blob(digest).open("rb") as f:
            cache.put(read_chunks(f), what=f"{self.path}/blobs/{digest}", sha256=hex_of(digest), size=size)


class LayoutOrigin(Origin):
    """An image in an OCI layout: its blobs are copied into the cache, digest checked, never downloaded."""

    def __init__(self, ref: ImageRef, source: dict[str, Any], cache: BlobCache):
        super().__init__(ref, source, cache)
        self.layout = LayoutSource(Path(source["location"]), source["ref"])

    def top(self) -> Manifest:
        digest, media_type = self.layout.top()
        return Manifest(self.layout.manifest_bytes(digest), media_type, digest)

    def _manifest(self, digest: str) -> bytes:
        return self.layout.manifest_bytes(digest)

    def _small_blob_into_cache(self, digest: str, size: int, limit: int) -> None:
        self.layout.copy_into(self.cache, digest, size)

    def _blob_item(self, digest: str, size: int | None, what: str) -> FetchItem | None:
        self.layout.copy_into(self.cache, digest, size)
        return None


class DockerOrigin(Origin):
    """An image in the local Docker engine: resolve saves it into the cache as an OCI image
    (``docker_save_into_cache``); after that every byte is in the cache, as for the base origin."""

    def __init__(self, ref: ImageRef, source: dict[str, Any], cache: BlobCache):
        super().__init__(ref, source, cache)
        self.image: str = source["location"]  # the engine's name of the image
        self._saved: tuple[str, bytes] | None = None

    def top(self) -> Manifest:
        if self._saved is None:
            self._saved = docker_save_into_cache(self.image, self.cache)
        digest, data = self._saved
        return Manifest(data, OCI_MANIFEST, digest)


def docker_save_into_cache(image: str, cache: BlobCache) -> tuple[str, bytes]:
    """Save ``image`` from the local engine and store it as an OCI image; returns (manifest
    digest, manifest bytes). Deterministic: the same image gives the same manifest digest."""
    try:
        import docker  # the SDK; only imported when a spec names a docker: source
    except ImportError as e:
        raise InputError("images from a local Docker engine need the docker SDK: pip install docker") from e
    try:
        client = docker.from_env()
        client.ping()
    except Exception as e:  # the SDK raises DockerException, requests errors, FileNotFoundError...
        raise FetchError(f"docker:{image}: no Docker engine is reachable ({type(e).__name__}); "
                         "start one or use an OCI layout (skopeo copy docker-daemon:… oci:DIR:REF)") from e
    try:
        img = client.images.get(image)
    except Exception as e:
        raise FetchError(f"docker:{image}: the engine has no such image ({e})") from e
    with tempfile.TemporaryFile(dir=cache.root / "partial") as tmp:
        for chunk in img.save(named=True):
            tmp.write(chunk)
        tmp.seek(0)
        return archive_into_cache(tmp, f"docker:{image}", cache)


def archive_into_cache(fileobj, what: str, cache: BlobCache) -> tuple[str, bytes]:
    """Read a ``docker save`` archive (``manifest.json`` + config + layer tars) into the cache."""
    member_re = re.compile(r"^(?:blobs/sha256/[0-9a-f]{64}|[0-9a-f]{64}(?:\.json|/layer\.tar))$")
    with tarfile.open(fileobj=fileobj, mode="r:") as tf:
        members = {m.name: m for m in tf.getmembers() if m.isreg()}
        if "manifest.json" not in members:
            raise InputError(f"{what}: not a docker save archive (no manifest.json)")
        entries = json.loads(tf.extractfile(members["manifest.json"]).read())  # type: ignore[union-attr]
        if not isinstance(entries, list) or len(entries) != 1:
            raise InputError(f"{what}: expected one image in the archive, found {len(entries) if isinstance(entries, list) else '?'}")
        entry = entries[0]

        def store(name: str) -> tuple[str, int]:
            if not member_re.match(name) or name not in members:
                raise InputError(f"{what}: archive member {name!r} is missing or unexpected")
            f = tf.extractfile(members[name])
            assert f is not None
            # a regular member's reader is a BufferedReader (a BinaryIO); typeshed says IO[bytes]
            hexd, size = cache.put(read_chunks(cast(BinaryIO, f)), what=f"{what}:{name}", sha256=None, size=members[name].size)
            return "sha256:" + hexd, size

        config_digest, config_size = store(entry["Config"])
        layers = []
        for name in entry["Layers"]:
            digest, size = store(name)
            layers.append({"mediaType": OCI_LAYER_TAR, "digest": digest, "size": size})
    manifest = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                           "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": config_size},
                           "layers": layers}, indent=2).encode()
    hexd, _ = cache.put_bytes(manifest, what=f"{what} manifest")
    return "sha256:" + hexd, manifest
