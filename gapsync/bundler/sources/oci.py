"""Container images from any registry that speaks the OCI distribution API.

``resolve`` turns each reference into digests: the top manifest (an index or a manifest) and,
under an index, the manifest of each selected platform. ``plan`` lists the blobs an image needs
(manifests by their exact bytes, configs, layers) so that ``bundle create`` fetches each digest
once into the shared cache, however many images share it.
"""

from __future__ import annotations

import hashlib
import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from gapsync.bundler.cache import BlobCache
from gapsync.bundler.fetch import FetchItem
from gapsync.bundler.lock import LockedImage
from gapsync.bundler.sources.oci_local import LayoutSource, docker_save_into_cache
from gapsync.bundler.spec import ImageSource, ImagesSpec
from gapsync.errors import DigestMismatchError, FetchError, InputError, UpstreamError
from gapsync.names import BadName, check_image_name, check_image_tag
from gapsync.oci import (
    DIGEST_RE,
    INDEX_TYPES,
    MANIFEST_TYPES,
    OCI_MANIFEST,
    ImageRef,
    Platform,
    hex_of,
    rewritten_index,
)
from gapsync.oci_client import Manifest, RegistryClient

MAX_CONFIG = 8 * 1024 * 1024


class Clients:
    """One client per registry (tokens are per registry and scope)."""

    def __init__(self, insecure: tuple[str, ...] = ()):
        self.insecure = set(insecure)
        self._clients: dict[str, RegistryClient] = {}

    def get(self, registry: str) -> RegistryClient:
        if registry not in self._clients:
            scheme = "http" if registry in self.insecure else "https"
            self._clients[registry] = RegistryClient(registry, scheme=scheme)
        return self._clients[registry]


def _json(data: bytes, what: str) -> dict:
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError):
        raise UpstreamError(f"{what}: not JSON") from None
    if not isinstance(doc, dict):
        raise UpstreamError(f"{what}: not a JSON object")
    return doc


def _descriptor(d: object, what: str) -> dict:
    """A content descriptor, typed: an object with a string mediaType, a sha256 digest and a
    byte count (and a platform object, when there is one). Anything else is one line."""
    if not isinstance(d, dict):
        raise UpstreamError(f"{what}: a descriptor is a JSON {type(d).__name__}, not an object")
    size = d.get("size")
    if (not isinstance(d.get("mediaType", ""), str) or not isinstance(d.get("digest"), str)
            or not DIGEST_RE.match(d["digest"]) or not isinstance(size, int) or isinstance(size, bool) or size < 0
            or not isinstance(d.get("platform") or {}, dict) or not isinstance(d.get("urls") or [], list)):
        raise UpstreamError(f"{what}: descriptor {str(d.get('digest'))[:80]!r} lacks a sha256 digest, a size or a "
                            "media type of the right type")
    return d


def _descriptors(doc: dict, key: str, what: str) -> list[dict]:
    items = doc.get(key) or []
    if not isinstance(items, list):
        raise UpstreamError(f"{what}: '{key}' is a JSON {type(items).__name__}, not a list")
    return [_descriptor(d, what) for d in items]


class Origin:
    """Where one image's bytes come from: a registry, an OCI layout, or a docker save archive."""

    def __init__(self, clients: Clients, ref: ImageRef, source: dict | ImageSource | None, cache: BlobCache):
        self.ref, self.cache = ref, cache
        src = source.__dict__ if isinstance(source, ImageSource) else source
        self.kind = src["kind"] if src else "registry"
        self.source = src
        self.client = clients.get(ref.registry) if self.kind == "registry" else None
        self.layout = LayoutSource(Path(src["location"]), src["ref"]) if self.kind == "oci_layout" else None
        self._docker: tuple[str, bytes] | None = None

    def describe(self) -> str:
        return str(self.ref) if self.kind == "registry" else f"{self.kind}:{self.source['location']}"

    def top(self) -> Manifest:
        if self.client:
            return self.client.get_manifest(self.ref.repository, self.ref.reference)
        if self.layout:
            digest, media_type = self.layout.top()
            return Manifest(self.layout.manifest_bytes(digest), media_type, digest)
        if self._docker is None:
            self._docker = docker_save_into_cache(self.source["location"], self.cache)
        digest, data = self._docker
        return Manifest(data, OCI_MANIFEST, digest)

    def manifest(self, digest: str) -> bytes:
        hexd = hex_of(digest)
        if self.cache.has(hexd):
            return self.cache.path(hexd).read_bytes()
        if self.client:
            data = self.client.get_manifest(self.ref.repository, digest).data
        elif self.layout:
            data = self.layout.manifest_bytes(digest)
        else:
            raise FetchError(f"{self.describe()}: manifest {digest} is gone from the cache; run resolve again")
        self.cache.put_bytes(data, what=f"{self.describe()}@{digest}")
        return data

    def small_blob(self, digest: str, size: int, limit: int) -> bytes:
        if size > limit:
            raise FetchError(f"{self.describe()}: blob {digest} of {size} bytes (limit {limit})")
        hexd = hex_of(digest)
        if not self.cache.has(hexd):
            if self.client:
                r = self.client.open_blob(self.ref.repository, digest)
                with r:
                    data = r.raw.read(limit + 1, decode_content=True)
                if "sha256:" + hashlib.sha256(data).hexdigest() != digest:
                    raise DigestMismatchError(f"{self.describe()}: blob {digest} does not match its bytes")
                self.cache.put_bytes(data, what=f"{self.describe()}@{digest}")
            elif self.layout:
                self.layout.copy_into(self.cache, digest, size)
            else:
                raise FetchError(f"{self.describe()}: blob {digest} is gone from the cache; run resolve again")
        return self.cache.path(hexd).read_bytes()

    def blob_items(self, blobs: dict[str, dict], what: str) -> list[FetchItem]:
        """Fetch items for a registry; local sources copy straight into the cache."""
        items = []
        client, repo = self.client, self.ref.repository
        for digest, info in blobs.items():
            size = info["size"] if info["size"] >= 0 else None
            if client:
                items.append(FetchItem(url=f"{client.base}/v2/{repo}/blobs/{digest}", sha256=hex_of(digest), size=size,
                                       what=f"{what}@{digest[:19]}",
                                       opener=lambda start, d=digest, c=client: c.open_blob(repo, d, start)))
            elif self.layout:
                self.layout.copy_into(self.cache, digest, size)
            elif not self.cache.has(hex_of(digest)):
                raise FetchError(f"{self.describe()}: blob {digest} is gone from the cache; run resolve again")
        return items


def _config_platform(origin: Origin, manifest: dict) -> Platform:
    desc = _descriptor(manifest.get("config"), f"{origin.describe()} config")
    data = origin.small_blob(desc["digest"], desc["size"], MAX_CONFIG)
    cfg = _json(data, f"{origin.describe()} config")
    return Platform(cfg.get("os", ""), cfg.get("architecture", ""), cfg.get("variant") or None)


def resolve_image(origin: Origin, spec: ImagesSpec, raw: str) -> LockedImage:
    ref = origin.ref
    top = origin.top()
    doc = _json(top.data, origin.describe())
    common = {"ref": raw, "name": ref.name, "tag": ref.tag, "digest": top.digest, "media_type": top.media_type,
              "size": len(top.data), "rewrite_index": spec.rewrite_index, "source": origin.source}
    if top.media_type in INDEX_TYPES or "manifests" in doc:
        chosen, found = [], []
        manifests = _descriptors(doc, "manifests", origin.describe())
        for want in spec.platforms:
            for d in manifests:
                p = Platform.from_descriptor(d.get("platform") or {})
                if d.get("mediaType") in MANIFEST_TYPES and want.matches(p) and d["digest"] not in [c["digest"] for c in chosen]:
                    chosen.append({"digest": d["digest"], "media_type": d["mediaType"], "size": int(d["size"]),
                                   "platform": str(p)})
                    found.append(str(want))
                    break
        missing = [str(p) for p in spec.platforms if str(p) not in found]
        if not chosen:
            have = sorted({str(Platform.from_descriptor(d.get("platform") or {})) for d in manifests})
            raise InputError(f"{origin.describe()}: none of the platforms {[str(p) for p in spec.platforms]} is in the index (it has {have})")
        return LockedImage(**common, platforms=[c["platform"] for c in chosen], missing_platforms=missing, manifests=chosen)
    if top.media_type not in MANIFEST_TYPES and "layers" not in doc:
        raise FetchError(f"{origin.describe()}: unsupported manifest type {top.media_type!r}")
    platform = _config_platform(origin, doc)
    if not any(w.matches(platform) for w in spec.platforms):
        raise InputError(f"{origin.describe()}: a single-platform image for {platform}, not one of {[str(p) for p in spec.platforms]}")
    return LockedImage(**common, platforms=[str(platform)], missing_platforms=[], manifests=[])


def resolve(spec: ImagesSpec, raw_refs: list[str], cache: BlobCache, jobs: int = 8) -> list[LockedImage]:
    for ref, raw in zip(spec.refs, raw_refs, strict=True):
        try:  # the names the air side's layout accepts (gapsync/names.py): refused here, not after signing
            check_image_name(ref.name)
            if ref.tag is not None:
                check_image_tag(ref.tag)
        except BadName as e:
            raise InputError(f"image {raw!r}: {e}; the air side would refuse it") from None
    clients = Clients(spec.insecure)
    origins = [Origin(clients, r, spec.source_of(i), cache) for i, r in enumerate(spec.refs)]
    with ThreadPoolExecutor(max_workers=max(1, min(jobs, len(origins)))) as pool:
        return list(pool.map(lambda o, raw: resolve_image(o, spec, raw), origins, raw_refs))


@dataclass
class ImagePlan:
    image: LockedImage
    top: bytes  # exact bytes of the top manifest (possibly a rewritten index)
    top_digest: str
    manifests: dict[str, tuple[bytes, str, str]]  # digest -> (bytes, media type, platform) under an index
    blobs: dict[str, dict]  # digest -> {"size", "media_type"} for configs and layers


def plan_image(clients: Clients, image: LockedImage, cache: BlobCache) -> tuple[ImagePlan, Origin]:
    """The manifests of a locked image (from the cache when there), verified by digest, and the
    blobs they name."""
    origin = Origin(clients, ImageRef.parse(image.name + "@" + image.digest), image.source, cache)
    top = origin.manifest(image.digest)
    manifests: dict[str, tuple[bytes, str, str]] = {}
    image_docs: list[tuple[str, dict]] = []
    if image.manifests:
        for m in image.manifests:
            data = origin.manifest(m["digest"])
            manifests[m["digest"]] = (data, m["media_type"], m["platform"])
            image_docs.append((m["digest"], _json(data, f"{image.name}@{m['digest']}")))
    else:
        image_docs.append((image.digest, _json(top, f"{image.name}@{image.digest}")))
    top_digest = image.digest
    if image.manifests and image.rewrite_index and len(image.manifests) < len(_descriptors(_json(top, image.name), "manifests", image.name)):
        top = rewritten_index(top, [m["digest"] for m in image.manifests])
        top_digest = "sha256:" + cache.put_bytes(top, what=f"{image.name} rewritten index")[0]
    blobs: dict[str, dict] = {}
    for digest, doc in image_docs:
        where = f"{image.name}@{digest}"
        for desc in [_descriptor(doc.get("config"), where), *_descriptors(doc, "layers", where)]:
            if desc.get("urls"):
                raise InputError(f"{image.name}@{digest}: foreign (non-distributable) layer {desc.get('digest')} is not supported")
            d = desc.get("digest", "")
            hex_of(d)
            blobs[d] = {"size": int(desc.get("size", -1)), "media_type": desc.get("mediaType", "")}
    return ImagePlan(image, top, top_digest, manifests, blobs), origin
