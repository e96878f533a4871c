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

from gapsync.bundler.cache import BlobCache
from gapsync.bundler.fetch import FetchItem
from gapsync.bundler.lock import LockedImage
from gapsync.bundler.spec import ImagesSpec
from gapsync.errors import DigestMismatchError, FetchError, InputError
from gapsync.oci import INDEX_TYPES, MANIFEST_TYPES, ImageRef, Platform, hex_of, rewritten_index
from gapsync.oci_client import RegistryClient

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
    except ValueError as e:
        raise FetchError(f"{what}: not JSON") from e
    if not isinstance(doc, dict):
        raise FetchError(f"{what}: not a JSON object")
    return doc


def _config_platform(client: RegistryClient, ref: ImageRef, manifest: dict) -> Platform:
    desc = manifest.get("config") or {}
    digest, size = desc.get("digest", ""), int(desc.get("size", 0))
    if size > MAX_CONFIG:
        raise FetchError(f"{ref}: config blob of {size} bytes")
    r = client.open_blob(ref.repository, digest)
    with r:
        data = r.raw.read(MAX_CONFIG + 1, decode_content=True)
    if "sha256:" + hashlib.sha256(data).hexdigest() != digest:
        raise DigestMismatchError(f"{ref}: config {digest} does not match its bytes")
    cfg = _json(data, f"{ref} config")
    return Platform(cfg.get("os", ""), cfg.get("architecture", ""), cfg.get("variant") or None)


def resolve_image(clients: Clients, ref: ImageRef, spec: ImagesSpec, raw: str) -> LockedImage:
    client = clients.get(ref.registry)
    top = client.get_manifest(ref.repository, ref.reference)
    doc = _json(top.data, str(ref))
    common = {"ref": raw, "name": ref.name, "tag": ref.tag, "digest": top.digest, "media_type": top.media_type,
              "size": len(top.data), "rewrite_index": spec.rewrite_index}
    if top.media_type in INDEX_TYPES or "manifests" in doc:
        chosen, found = [], []
        for want in spec.platforms:
            for d in doc.get("manifests", []):
                p = Platform.from_descriptor(d.get("platform") or {})
                if d.get("mediaType") in MANIFEST_TYPES and want.matches(p) and d["digest"] not in [c["digest"] for c in chosen]:
                    chosen.append({"digest": d["digest"], "media_type": d["mediaType"], "size": int(d["size"]),
                                   "platform": str(p)})
                    found.append(str(want))
                    break
        missing = [str(p) for p in spec.platforms if str(p) not in found]
        if not chosen:
            have = sorted({str(Platform.from_descriptor(d.get("platform") or {})) for d in doc.get("manifests", [])})
            raise InputError(f"{ref}: none of the platforms {[str(p) for p in spec.platforms]} is in the index (it has {have})")
        return LockedImage(**common, platforms=[c["platform"] for c in chosen], missing_platforms=missing, manifests=chosen)
    if top.media_type not in MANIFEST_TYPES and "layers" not in doc:
        raise FetchError(f"{ref}: unsupported manifest type {top.media_type!r}")
    platform = _config_platform(client, ref, doc)
    if not any(w.matches(platform) for w in spec.platforms):
        raise InputError(f"{ref}: a single-platform image for {platform}, not one of {[str(p) for p in spec.platforms]}")
    return LockedImage(**common, platforms=[str(platform)], missing_platforms=[], manifests=[])


def resolve(spec: ImagesSpec, raw_refs: list[str], jobs: int = 8) -> list[LockedImage]:
    clients = Clients(spec.insecure)
    with ThreadPoolExecutor(max_workers=max(1, min(jobs, len(spec.refs)))) as pool:
        return list(pool.map(lambda rr: resolve_image(clients, rr[0], spec, rr[1]), zip(spec.refs, raw_refs, strict=True)))


@dataclass
class ImagePlan:
    image: LockedImage
    top: bytes  # exact bytes of the top manifest (possibly a rewritten index)
    top_digest: str
    manifests: dict[str, tuple[bytes, str, str]]  # digest -> (bytes, media type, platform) under an index
    blobs: dict[str, dict]  # digest -> {"size", "media_type"} for configs and layers


def plan_image(clients: Clients, image: LockedImage, cache: BlobCache) -> ImagePlan:
    """Fetch (or take from the cache) the manifests of a locked image, verified by digest."""
    ref = ImageRef.parse(image.name + "@" + image.digest)
    client = clients.get(ref.registry)

    def manifest_bytes(digest: str) -> bytes:
        hexd = hex_of(digest)
        if cache.has(hexd):
            return cache.path(hexd).read_bytes()
        m = client.get_manifest(ref.repository, digest)
        cache.put_bytes(m.data, what=f"{image.name}@{digest}")
        return m.data

    top = manifest_bytes(image.digest)
    manifests: dict[str, tuple[bytes, str, str]] = {}
    image_docs: list[tuple[str, dict]] = []
    if image.manifests:
        for m in image.manifests:
            data = manifest_bytes(m["digest"])
            manifests[m["digest"]] = (data, m["media_type"], m["platform"])
            image_docs.append((m["digest"], _json(data, f"{image.name}@{m['digest']}")))
    else:
        image_docs.append((image.digest, _json(top, f"{image.name}@{image.digest}")))
    top_digest = image.digest
    if image.manifests and image.rewrite_index and len(image.manifests) < len(_json(top, image.name).get("manifests", [])):
        top = rewritten_index(top, [m["digest"] for m in image.manifests])
        top_digest = "sha256:" + cache.put_bytes(top, what=f"{image.name} rewritten index")[0]
    blobs: dict[str, dict] = {}
    for digest, doc in image_docs:
        for desc in [doc.get("config") or {}, *doc.get("layers", [])]:
            if desc.get("urls"):
                raise InputError(f"{image.name}@{digest}: foreign (non-distributable) layer {desc.get('digest')} is not supported")
            d = desc.get("digest", "")
            hex_of(d)
            blobs[d] = {"size": int(desc.get("size", -1)), "media_type": desc.get("mediaType", "")}
    return ImagePlan(image, top, top_digest, manifests, blobs)


def blob_items(clients: Clients, plan: ImagePlan) -> list[FetchItem]:
    ref = ImageRef.parse(plan.image.name + "@" + plan.image.digest)
    client = clients.get(ref.registry)
    items = []
    for digest, info in plan.blobs.items():
        items.append(FetchItem(url=f"{client.base}/v2/{ref.repository}/blobs/{digest}", sha256=hex_of(digest),
                               size=info["size"] if info["size"] >= 0 else None, what=f"{plan.image.name}@{digest[:19]}",
                               opener=lambda start, d=digest: client.open_blob(ref.repository, d, start)))
    return items
