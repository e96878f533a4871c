"""Push the mirror's images into any registry that speaks the OCI distribution API.

For each image: blobs first (HEAD to skip what is there, a cross-repository mount when this run
already pushed the blob to another repository, else an upload: monolithic, or chunked with
PATCH above ``chunk_size``), then platform manifests by digest, then the top manifest by tag,
always with its exact bytes and media type so that no digest changes. Transient failures are
retried with backoff; a re-run after an interruption sends only what did not arrive.

Repository names drop the source registry (``docker.io/library/python`` -> ``library/python``)
under an optional prefix taken from the URL path (``https://reg.internal/mirror``).
"""

from __future__ import annotations

import functools
import hashlib
import json
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from gapsync.errors import InputError, PublishError
from gapsync.mirror.layout import MirrorLayout
from gapsync.mirror.targets.oci_layout import OciLayout
from gapsync.oci import INDEX_TYPES, REF_NAME, ImageRef, rewritten_index
from gapsync.oci_client import RegistryClient, with_retries

DEFAULT_CHUNK = 64 * 1024 * 1024


@dataclass
class PushReport:
    registry: str
    images: list[str] = field(default_factory=list)  # destination refs
    blobs_uploaded: int = 0
    blobs_skipped: int = 0
    blobs_mounted: int = 0
    bytes_uploaded: int = 0
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def _dest_repo(name: str, prefix: str) -> str:
    ref = ImageRef.parse(name + ":x")
    return f"{prefix}/{ref.repository}" if prefix else ref.repository


def _attached_name(entry: dict, suffix: str) -> str:
    """The layout name of a cosign signature (``.sig``), attestation or SBOM of an image entry."""
    ref = entry["annotations"][REF_NAME]
    name = ref.split("@", 1)[0] if "@" in ref else ref.rsplit(":", 1)[0]
    return f"{name}:sha256-{entry['digest'].split(':', 1)[1]}.{suffix}"


def push_images(mirror: MirrorLayout, url: str, *, only: set[str] | None = None, jobs: int = 4,
                chunk_size: int = DEFAULT_CHUNK, client: RegistryClient | None = None) -> PushReport:
    layout = OciLayout(mirror)
    index = layout.read_index()["manifests"]
    entries = [m for m in index if only is None or m["annotations"][REF_NAME] in only]
    if only is not None:  # the signatures and attestations attached to a named image go with it (cosign's tags)
        attached = {_attached_name(e, suffix) for e in entries for suffix in ("sig", "att", "sbom")}
        entries += [m for m in index if m["annotations"][REF_NAME] in attached and m not in entries]
    if not entries:
        raise InputError(f"{mirror.root}: no images to push" + (" (none of those named)" if only else ""))
    if client is None:
        client, prefix = RegistryClient.from_url(url)
    else:
        prefix = ""
    report = PushReport(client.registry)
    # plan every destination first, so that a collision refuses the push before it starts
    plan: dict[str, tuple[str, str | None, dict]] = {}
    for e in entries:
        name = e["annotations"][REF_NAME]
        ref = ImageRef.parse(name)
        dest = f"{_dest_repo(ref.name, prefix)}:{ref.tag}" if ref.tag else f"{_dest_repo(ref.name, prefix)}@{e['digest']}"
        if dest in plan and plan[dest][2]["digest"] != e["digest"]:
            raise PublishError(f"{client.registry}: {name} and {plan[dest][0]} would both be pushed as {dest}")
        plan[dest] = (name, ref.tag, e)
    pushed_to: dict[str, str] = {}  # blob digest -> a repository that has it (for mounts)
    lock = threading.Lock()

    def push_blob(repo: str, digest: str) -> None:
        path = layout.blob_file(digest)
        size = path.stat().st_size
        if with_retries(digest, lambda: client.blob_exists(repo, digest)):
            with lock:
                report.blobs_skipped += 1
                pushed_to.setdefault(digest, repo)
            return
        with lock:
            source = pushed_to.get(digest)
        if source and source != repo and with_retries(digest, lambda: client.mount_blob(repo, digest, source)):
            with lock:
                report.blobs_mounted += 1
            return
        with_retries(digest, lambda: client.upload_blob(repo, digest, path, size, chunk_size))
        with lock:
            report.blobs_uploaded += 1
            report.bytes_uploaded += size
            pushed_to.setdefault(digest, repo)

    for dest, (_name, tag, entry) in sorted(plan.items()):
        repo = dest.split(":")[0].split("@")[0]
        top = layout.blob_file(entry["digest"]).read_bytes()
        doc = json.loads(top)
        children: list[tuple[str, str, bytes]] = []
        if entry["mediaType"] in INDEX_TYPES or "manifests" in doc:
            for d in doc.get("manifests", []):
                f = layout.blob_file(d["digest"])
                if f.exists():  # platforms that were not selected are absent from the mirror
                    children.append((d["digest"], d["mediaType"], f.read_bytes()))
            missing = len(doc.get("manifests", [])) - len(children)
        else:
            missing = 0
            children = []
        image_docs = [json.loads(c[2]) for c in children] if children else [doc]
        blobs = sorted({desc["digest"] for m in image_docs for desc in [m["config"], *m.get("layers", [])]})
        with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            list(pool.map(push_blob, [repo] * len(blobs), blobs))
        for digest, media_type, data in children:
            if client.manifest_digest(repo, digest) != digest:
                _put(client, repo, digest, data, media_type)
        reference = tag or entry["digest"]
        r = with_retries(reference, functools.partial(_put_top, client, repo, reference, top, entry["mediaType"]))
        if r.status_code == 400 and missing and children:
            # The registry insists that every manifest of an index is present. Tag an index of
            # the platforms we carry instead: the platform manifests keep their digests, only
            # the index's changes (bundle with images.rewrite_index: true to carry it that way).
            filtered = rewritten_index(top, [c[0] for c in children])
            _put(client, repo, reference, filtered, entry["mediaType"])
            new = "sha256:" + hashlib.sha256(filtered).hexdigest()
            report.notes.append(f"{dest}: the registry refused the original index {entry['digest']} ({missing} absent "
                                f"platform(s)); tagged an index of the {len(children)} present platforms, {new}")
        elif r.status_code not in (200, 201):
            raise PublishError(f"{client.registry}/{repo}:{reference}: manifest refused (HTTP {r.status_code})")
        report.images.append(f"{client.registry}/{dest}")
    return report


def _put_top(client: RegistryClient, repo: str, reference: str, data: bytes, media_type: str):
    return _retryable(client.put_manifest(repo, reference, data, media_type))


def _retryable(r):
    """A 5xx on a manifest PUT is worth another try (with_retries retries on this error)."""
    if r.status_code >= 500:
        raise PublishError(f"manifest PUT answered HTTP {r.status_code}")
    return r


def _put(client: RegistryClient, repo: str, reference: str, data: bytes, media_type: str) -> None:
    r = with_retries(reference, lambda: _retryable(client.put_manifest(repo, reference, data, media_type)))
    if r.status_code not in (200, 201):
        raise PublishError(f"{client.registry}/{repo}@{reference}: manifest refused (HTTP {r.status_code})")
