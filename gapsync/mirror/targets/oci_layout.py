"""One OCI image layout under MIRROR/oci for every image of every channel, blobs shared.

Stock tools read it (``skopeo inspect oci:MIRROR/oci:docker.io/library/python:3.12``); ``gapsync
serve`` answers the distribution API's read side from it; ``gapsync push`` copies it into a
registry. Each image reference is one ``index.json`` entry whose ``org.opencontainers.image.ref.name``
is the full ``registry/repository:tag``; a later bundle that moved a tag replaces its entry.
Blobs (manifests, configs, layers) are hard links to the mirror's verified blob store.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

from gapsync import faults, fsutil
from gapsync.bundle.records import OciImage
from gapsync.errors import BundleFormatError
from gapsync.mirror.journal import DirectWriter
from gapsync.mirror.layout import MirrorLayout
from gapsync.mirror.targets.chart_repo import ChartRepo
from gapsync.mirror.targets.referrers import referrer_indexes
from gapsync.model import Target
from gapsync.names import BadName, check_image_name, check_image_tag
from gapsync.oci import DIGEST_RE, OCI_INDEX, REF_NAME, hex_of

LAYOUT_VERSION = {"imageLayoutVersion": "1.0.0"}


def ref_name(t: Target) -> str:
    return OciImage.from_target(t).ref


class OciLayout:
    kinds: ClassVar[frozenset[str]] = frozenset({"oci-image", "oci-manifest", "oci-blob"})

    def __init__(self, layout: MirrorLayout):
        self.root = layout.oci_root
        self.index_path = layout.oci_index
        self.blobs_dir = layout.oci_blobs_dir
        self.layout_file = layout.oci_layout_file
        self.charts = ChartRepo(layout)  # Helm charts are also published as a static chart repository

    def blob_file(self, digest: str) -> Path:
        return self.blobs_dir / hex_of(digest)

    def read_index(self) -> dict:
        return fsutil.read_json(self.index_path, {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []})

    def check(self, targets: list[Target]) -> None:
        for t in targets:
            if t.kind == "oci-image":
                c = OciImage.from_target(t)
                name, tag, digest = c.name, c.tag, c.digest
                try:  # the rules resolve applied at the DMZ (gapsync/names.py)
                    check_image_name(name)
                    if tag is not None:
                        check_image_tag(tag)
                except BadName as e:
                    raise BundleFormatError(f"target {t.path!r}: bad image name {name!r} or tag {tag!r} ({e})") from None
                if not DIGEST_RE.match(digest) or hex_of(digest) != t.blob.digest:
                    raise BundleFormatError(f"target {t.path!r}: digest {digest!r} is not the target's sha256")
                if t.path != f"oci/image/{c.ref}":
                    raise BundleFormatError(f"target {t.path!r}: path does not match the image reference")
                if c.media_type is None:
                    raise BundleFormatError(f"target {t.path!r}: no media type (the index entry needs one)")
            elif t.path != f"oci/{'manifest' if t.kind == 'oci-manifest' else 'blob'}/sha256/{t.blob.digest}":
                raise BundleFormatError(f"target {t.path!r}: path does not match its digest")
        self.charts.check(targets)

    def is_published(self, t: Target) -> bool:
        f = self.blob_file("sha256:" + t.blob.digest)
        if not (f.exists() and f.stat().st_size == t.blob.size):
            return False
        if t.kind != "oci-image":
            return True
        want = ref_name(t)
        return any(m.get("annotations", {}).get(REF_NAME) == want and m.get("digest") == OciImage.from_target(t).digest
                   for m in self.read_index()["manifests"])

    def publish(self, targets: list[Target], blob_path: Callable[[str], Path], fs: DirectWriter) -> list[str]:
        self.check(targets)
        if not targets:
            return []
        fs.mkdirs(self.blobs_dir)
        if not self.layout_file.exists():
            fs.write_atomic(self.layout_file, json.dumps(LAYOUT_VERSION).encode())
        # every blob and manifest before the index entry that makes an image visible
        for t in sorted(targets, key=lambda t: t.kind == "oci-image"):
            dst = self.blobs_dir / t.blob.digest
            if not (dst.exists() and dst.stat().st_size == t.blob.size):
                fs.link_or_copy(blob_path(t.blob.digest), dst)
                faults.point("publish.oci.blob")
        index = self.read_index()
        published = []
        for t in (t for t in targets if t.kind == "oci-image"):
            c = OciImage.from_target(t)
            name = c.ref
            entry = {"mediaType": c.media_type, "digest": c.digest, "size": t.blob.size,
                     "annotations": {REF_NAME: name}}
            if c.artifact_type:  # a chart, a signature: the OCI 1.1 descriptor field
                entry["artifactType"] = c.artifact_type
            index["manifests"] = [m for m in index["manifests"] if m.get("annotations", {}).get(REF_NAME) != name]
            index["manifests"].append(entry)
            published.append(name)
        # artifacts that came as referrers: the referrers tag schema (sha256-<hex>), see referrers.py
        for tag, data in referrer_indexes(targets, index["manifests"], self.blob_file):
            hexd = hashlib.sha256(data).hexdigest()
            if not self.blob_file(f"sha256:{hexd}").exists():
                fs.write_atomic(self.blob_file(f"sha256:{hexd}"), data)
            index["manifests"] = [m for m in index["manifests"] if m.get("annotations", {}).get(REF_NAME) != tag]
            index["manifests"].append({"mediaType": OCI_INDEX, "digest": f"sha256:{hexd}", "size": len(data),
                                       "annotations": {REF_NAME: tag}})
        index["manifests"].sort(key=lambda m: m.get("annotations", {}).get(REF_NAME, ""))
        fs.write_atomic(self.index_path, json.dumps(index, indent=1).encode())
        return sorted(published) + self.charts.publish(targets, blob_path, fs)
