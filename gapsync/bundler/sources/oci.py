"""Container images from any registry that speaks the OCI distribution API.

``resolve`` turns each reference into digests: the top manifest (an index or a manifest) and,
under an index, the manifest of each selected platform. ``plan`` lists the blobs an image needs
(manifests by their exact bytes, configs, layers) so that ``bundle create`` fetches each digest
once into the shared cache, however many images share it.
"""

from __future__ import annotations

import hashlib
import json
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any, ClassVar

import requests

from gapsync.bundler.cache import BlobCache
from gapsync.bundler.fetch import FetchItem
from gapsync.bundler.lock import Lock, LockedImage
from gapsync.bundler.sources.base import FetchContext, ResolveContext
from gapsync.bundler.spec import ImageSource, ImagesSpec
from gapsync.errors import DigestMismatchError, FetchError, InputError, UpstreamError
from gapsync.log import event
from gapsync.names import BadName, check_image_name, check_image_tag
from gapsync.oci import (
    DIGEST_RE,
    INDEX_TYPES,
    MANIFEST_TYPES,
    OCI_INDEX,
    ImageRef,
    Platform,
    hex_of,
    rewritten_index,
)
from gapsync.oci_client import Manifest, RegistryClient
from gapsync.upstream import read_capped

MAX_CONFIG = 8 * 1024 * 1024
MAX_REFERRERS = 64  # per image: a registry listing more is not followed further
ATTACHED_SUFFIXES = ("sig", "att", "sbom")  # cosign's tag scheme
IMAGE_CONFIG_TYPES = ("application/vnd.oci.image.config.v1+json", "application/vnd.docker.container.image.v1+json")
MEDIA_TYPE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}$")


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
    """Where one image's bytes come from. This base is an image whose every byte went into the
    cache at resolve (a ``docker save``, an HTTP chart's manifest): it reads nothing more, and a
    byte gone from the cache means resolving again. A registry (below) and an OCI layout
    (``oci_local.py``) read what the cache lacks; :func:`origin_for` picks one by the image's source."""

    client: RegistryClient | None = None  # a registry's: where signatures attached to an image are found

    def __init__(self, ref: ImageRef, source: dict[str, Any] | None, cache: BlobCache):
        self.ref, self.cache = ref, cache
        self.source = source  # the lock's ``source`` of the image: None for a registry
        self.kind: str = source["kind"] if source else "registry"

    def describe(self) -> str:
        return f"{self.kind}:{(self.source or {}).get('location')}"

    def top(self) -> Manifest:
        raise FetchError(f"{self.describe()}: only the bytes cached at resolve are known; run resolve again")

    def manifest(self, digest: str) -> bytes:
        hexd = hex_of(digest)
        if self.cache.has(hexd):
            return self.cache.path(hexd).read_bytes()
        data = self._manifest(digest)
        self.cache.put_bytes(data, what=f"{self.describe()}@{digest}")
        return data

    def small_blob(self, digest: str, size: int, limit: int) -> bytes:
        if size > limit:
            raise FetchError(f"{self.describe()}: blob {digest} of {size} bytes (limit {limit})")
        hexd = hex_of(digest)
        if not self.cache.has(hexd):
            self._small_blob_into_cache(digest, size, limit)
        return self.cache.path(hexd).read_bytes()

    def blob_items(self, blobs: dict[str, dict[str, Any]], what: str) -> list[FetchItem]:
        """Fetch items for what must be downloaded; local origins copy straight into the cache."""
        items = []
        for digest, info in blobs.items():
            item = self._blob_item(digest, info["size"] if info["size"] >= 0 else None, what)
            if item is not None:
                items.append(item)
        return items

    def _gone(self, what: str) -> FetchError:
        return FetchError(f"{self.describe()}: {what} is gone from the cache; run resolve again")

    def _manifest(self, digest: str) -> bytes:
        raise self._gone(f"manifest {digest}")

    def _small_blob_into_cache(self, digest: str, size: int, limit: int) -> None:
        raise self._gone(f"blob {digest}")

    def _blob_item(self, digest: str, size: int | None, what: str) -> FetchItem | None:
        if not self.cache.has(hex_of(digest)):
            raise self._gone(f"blob {digest}")
        return None


class RegistryOrigin(Origin):
    """An image in a registry that speaks the OCI distribution API: blobs are downloaded by the
    parallel, resumable downloader, with the registry's token for each."""

    def __init__(self, clients: Clients, ref: ImageRef, cache: BlobCache):
        super().__init__(ref, None, cache)
        self.client = self.registry = clients.get(ref.registry)

    def describe(self) -> str:
        return str(self.ref)

    def top(self) -> Manifest:
        return self.registry.get_manifest(self.ref.repository, self.ref.reference)

    def _manifest(self, digest: str) -> bytes:
        return self.registry.get_manifest(self.ref.repository, digest).data

    def _small_blob_into_cache(self, digest: str, size: int, limit: int) -> None:
        r = self.registry.open_blob(self.ref.repository, digest)
        with r:
            data = r.raw.read(limit + 1, decode_content=True)
        if "sha256:" + hashlib.sha256(data).hexdigest() != digest:
            raise DigestMismatchError(f"{self.describe()}: blob {digest} does not match its bytes")
        self.cache.put_bytes(data, what=f"{self.describe()}@{digest}")

    def _blob_item(self, digest: str, size: int | None, what: str) -> FetchItem | None:
        client, repo = self.registry, self.ref.repository

        def open_from(start: int, d: str = digest) -> requests.Response:
            return client.open_blob(repo, d, start)

        return FetchItem(url=f"{client.base}/v2/{repo}/blobs/{digest}", sha256=hex_of(digest), size=size,
                         what=f"{what}@{digest[:19]}", opener=open_from)


def origin_for(clients: Clients, ref: ImageRef, source: dict[str, Any] | ImageSource | None,
               cache: BlobCache) -> Origin:
    """The origin of an image by the form of its source: none (the registry its name says), an
    OCI layout, a local Docker engine; any other form (an HTTP chart's) is all in the cache."""
    from gapsync.bundler.sources.oci_local import DockerOrigin, LayoutOrigin

    src = dict(source.__dict__) if isinstance(source, ImageSource) else source
    if src is None:
        return RegistryOrigin(clients, ref, cache)
    local: dict[str, type[Origin]] = {"oci_layout": LayoutOrigin, "docker": DockerOrigin}
    return local.get(src["kind"], Origin)(ref, src, cache)


def _config_platform(origin: Origin, manifest: dict) -> Platform:
    desc = _descriptor(manifest.get("config"), f"{origin.describe()} config")
    data = origin.small_blob(desc["digest"], desc["size"], MAX_CONFIG)
    cfg = _json(data, f"{origin.describe()} config")
    return Platform(cfg.get("os", ""), cfg.get("architecture", ""), cfg.get("variant") or None)


def resolve_image(origin: Origin, spec: ImagesSpec, raw: str) -> LockedImage:
    ref = origin.ref
    top = origin.top()
    doc = _json(top.data, origin.describe())
    common = LockedImage(ref=raw, name=ref.name, tag=ref.tag, digest=top.digest, media_type=top.media_type,
                         size=len(top.data), platforms=[], missing_platforms=[], manifests=[],
                         rewrite_index=spec.rewrite_index, source=origin.source)
    if top.media_type in INDEX_TYPES or "manifests" in doc:
        chosen: list[dict[str, Any]] = []
        found: list[str] = []
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
        return replace(common, platforms=[c["platform"] for c in chosen], missing_platforms=missing, manifests=chosen)
    if top.media_type not in MANIFEST_TYPES and "layers" not in doc:
        raise FetchError(f"{origin.describe()}: unsupported manifest type {top.media_type!r}")
    kind = artifact_type(doc, origin.describe())
    if kind is not None:  # a chart, a signature, an SBOM: carried as it is, every blob by digest
        return replace(common, artifact_type=kind)
    platform = _config_platform(origin, doc)
    if not any(w.matches(platform) for w in spec.platforms):
        raise InputError(f"{origin.describe()}: a single-platform image for {platform}, not one of {[str(p) for p in spec.platforms]}")
    return replace(common, platforms=[str(platform)])


def artifact_type(doc: dict, what: str) -> str | None:
    """The artifact type of a manifest that is not a runnable image (its ``artifactType``, else
    its config's media type), or None for an image. Such a manifest has no platform to filter."""
    kind = doc.get("artifactType")
    config = _descriptor(doc.get("config"), f"{what} config") if doc.get("config") is not None else {}
    if kind is None and config.get("mediaType", "") in IMAGE_CONFIG_TYPES:
        # cosign's signatures and attestations have an image config but no filesystem layer
        layers = [d.get("mediaType", "") for d in _descriptors(doc, "layers", what)]
        if not layers or any("layer" in t or "rootfs" in t for t in layers):
            return None
        kind = layers[0]
    kind = kind if kind is not None else config.get("mediaType") or "application/octet-stream"
    if not isinstance(kind, str) or not MEDIA_TYPE_RE.match(kind):
        raise UpstreamError(f"{what}: artifactType {str(kind)[:80]!r} is not a media type")
    return kind


def attached(origin: Origin, image: LockedImage) -> list[LockedImage]:
    """Signatures, attestations and SBOMs attached to an image in its registry: the cosign tag
    scheme (``sha256-<hex>.sig|.att|.sbom``) and the OCI referrers API where the registry offers
    it (a 404 there is a registry without the API, not an error). Each is locked as an artifact
    whose ``subject`` is the image's digest, so it travels, is published and pushed with it."""
    client, repo = origin.client, origin.ref.repository
    if client is None:
        return []
    found: dict[str, LockedImage] = {}
    for suffix in ATTACHED_SUFFIXES:
        tag = f"sha256-{hex_of(image.digest)}.{suffix}"
        try:
            m = client.get_manifest(repo, tag)
        except FetchError as e:
            # not there (404), or a registry that answers 401/403 for a tag that does not exist:
            # nothing attached is carried, which images.require_signature then blocks (fail
            # closed); a registry that lies about what it sends (UpstreamError) stops resolve
            if "manifest not found" not in str(e):
                event("oci.attached.unavailable", "warning", image=image.name, tag=tag, reason=str(e))
            continue
        doc = _json(m.data, f"{image.name}:{tag}")
        if m.media_type not in MANIFEST_TYPES and "layers" not in doc:
            raise UpstreamError(f"{image.name}:{tag}: a {m.media_type or 'document'} where a signature manifest belongs")
        found[m.digest] = LockedImage(ref=f"{image.name}:{tag}", name=image.name, tag=tag, digest=m.digest,
                                      media_type=m.media_type, size=len(m.data), platforms=[], missing_platforms=[],
                                      manifests=[], artifact_type=artifact_type(doc, f"{image.name}:{tag}") or m.media_type,
                                      subject=image.digest)
    r = client.request("GET", f"/v2/{repo}/referrers/{image.digest}", scope=f"repository:{repo}:pull",
                       headers={"Accept": OCI_INDEX}, stream=True)
    if r.status_code != 200 or not r.headers.get("Content-Type", "").startswith(OCI_INDEX):
        r.close()  # no referrers API (distribution 2.x): the tag scheme above is the fallback
        return sorted(found.values(), key=lambda i: i.ref)
    index = _json(read_capped(r, MAX_CONFIG, f"{image.name}: referrers of {image.digest}"), f"{image.name} referrers")
    for d in _descriptors(index, "manifests", f"{image.name} referrers")[:MAX_REFERRERS]:
        if d["digest"] in found or d.get("mediaType") not in MANIFEST_TYPES:
            continue
        m = client.get_manifest(repo, d["digest"])
        doc = _json(m.data, f"{image.name}@{d['digest']}")
        subject = doc.get("subject")
        if not isinstance(subject, dict) or subject.get("digest") != image.digest:
            raise UpstreamError(f"{image.name}: referrer {d['digest']} does not name {image.digest} as its subject")
        found[m.digest] = LockedImage(ref=f"{image.name}@{m.digest}", name=image.name, tag=None, digest=m.digest,
                                      media_type=m.media_type, size=len(m.data), platforms=[], missing_platforms=[],
                                      manifests=[], artifact_type=artifact_type(doc, f"{image.name}@{m.digest}") or m.media_type,
                                      subject=image.digest)
    return sorted(found.values(), key=lambda i: i.ref)


def resolve(spec: ImagesSpec, raw_refs: list[str], cache: BlobCache, jobs: int = 8) -> list[LockedImage]:
    for ref, raw in zip(spec.refs, raw_refs, strict=True):
        try:  # the names the air side's layout accepts (gapsync/names.py): refused here, not after signing
            check_image_name(ref.name)
            if ref.tag is not None:
                check_image_tag(ref.tag)
        except BadName as e:
            raise InputError(f"image {raw!r}: {e}; the air side would refuse it") from None
    clients = Clients(spec.insecure)
    origins = [origin_for(clients, r, spec.source_of(i), cache) for i, r in enumerate(spec.refs)]
    with ThreadPoolExecutor(max_workers=max(1, min(jobs, len(origins)))) as pool:
        images = list(pool.map(lambda o, raw: resolve_image(o, spec, raw), origins, raw_refs))
        extra = pool.map(lambda o, i: attached(o, i) if i.subject is None else [], origins, images)
        have = {(i.name, i.digest) for i in images}
        for found in list(extra):
            for a in found:
                if (a.name, a.digest) not in have:
                    have.add((a.name, a.digest))
                    images.append(a)
    return images


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
    origin = origin_for(clients, ImageRef.parse(image.name + "@" + image.digest), image.source, cache)
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


def raw_refs(spec: ImagesSpec) -> list[str]:
    """How each image was written, for the lock: the reference, or ``KIND:LOCATION[:REF] as NAME``."""
    out = []
    for i, r in enumerate(spec.refs):
        src = spec.source_of(i)
        out.append(str(r) if src is None else f"{src.kind}:{src.location}{':' + src.ref if src.ref else ''} as {r}")
    return out


class OciSource:
    """The ``images:`` section is one entry: its references resolve in parallel, then the
    signatures attached to them, so the lock lists each once. Where an image's bytes are read
    (a registry, an OCI layout, a local Docker engine) is its :class:`Origin`."""

    name: ClassVar[str] = "oci"

    def resolve(self, entry: ImagesSpec, ctx: ResolveContext) -> Lock:
        return Lock(ctx.lock.spec_digest, images=resolve(entry, raw_refs(entry), ctx.cache, ctx.jobs))

    def fetch(self, record: LockedImage, ctx: FetchContext) -> list[FetchItem]:
        """The image's manifests (from the cache when there) and the blobs they name; its plan is
        kept in ``ctx.plans`` for the bundle's targets."""
        plan, origin = plan_image(ctx.oci_clients(), record, ctx.cache)
        ctx.plans.append(plan)
        return origin.blob_items(plan.blobs, record.name)
