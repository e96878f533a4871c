"""The air side's scan subjects: one per artifact of a verified release, files from staging or
the blob store, so the same scanners and policy run again on this side of the gap."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from gapsync.bundle.records import (
    CondaPackage,
    ModelTarget,
    OciBlob,
    OciImage,
    PythonFile,
    PythonMetadata,
    artifact_key,
    record_of,
)
from gapsync.mirror.targets.oci_layout import ref_name
from gapsync.model import Target
from gapsync.scanner.subject import ScanSubject, SubjectFile


def target_key(t: Target) -> str | None:
    """The artifact a target belongs to (None for bundle-level and shared targets)."""
    key = record_of(t).key()
    return None if key is None else str(key)


def build_subjects(targets: list[Target], path_of: Callable[[str], Path]) -> list[ScanSubject]:
    by_path = {t.path: t for t in targets}
    media = {t.blob.digest: OciBlob.from_target(t).media_type or "" for t in targets if t.kind == "oci-blob"}
    subjects: dict[str, ScanSubject] = {}
    for t in sorted(targets, key=lambda t: t.path):
        c = record_of(t)
        key = str(c.key())
        if isinstance(c, PythonFile):
            s = subjects.setdefault(key, ScanSubject("python", c.name, c.version, [], {"metadata": None}))
            s.files.append(SubjectFile(c.filename, t.blob.digest, t.blob.size, path_of(t.blob.digest)))
            meta = by_path.get(c.metadata or "")
            if meta is not None and s.meta["metadata"] is None:
                s.meta["metadata"] = path_of(meta.blob.digest)
        elif isinstance(c, OciImage):
            files = [SubjectFile(f"layer {d[:19]}", d.split(":", 1)[1], (p := path_of(d.split(":", 1)[1])).stat().st_size, p,
                                 media.get(d.split(":", 1)[1]))
                     for d in c.blobs if "config" not in media.get(d.split(":", 1)[1], "")]
            subjects[key] = ScanSubject("oci", c.name, c.tag or c.digest, files,
                                        {"ref": ref_name(t), **_signature_meta(c, targets, path_of)})
        elif isinstance(c, ModelTarget):
            doc = json.loads(path_of(t.blob.digest).read_bytes())
            files = [SubjectFile(f["path"], f["sha256"], f["size"], path_of(f["sha256"])) for f in doc["files"]]
            subjects[key] = ScanSubject(c.kind, c.name, c.revision, files,
                                        {"license": c.license, "source": c.source, "formats": list(c.formats)})
        elif isinstance(c, CondaPackage):
            s = subjects.setdefault(key, ScanSubject("conda", c.name, c.version, [], {"channels": [], "expected": {}}))
            name = f"{c.subdir}/{c.filename}"  # one file name may be in several subdirs
            s.files.append(SubjectFile(name, t.blob.digest, t.blob.size, path_of(t.blob.digest)))
            s.meta["channels"] = sorted({*s.meta["channels"], str(c.channel)})
            s.meta["record_license"] = (c.record or {}).get("license")
            s.meta["expected"][name] = {"name": c.name, "version": c.version, "build": c.build, "subdir": c.subdir}
    return list(subjects.values())


def _signature_meta(c: OciImage, targets: list[Target], path_of: Callable[[str], Path]) -> dict:
    """As on the connected side: the artifact type, or the image's upstream digest and the
    signatures attached to it (targets whose ``subject`` is that digest), verified here again."""
    from gapsync.scanner.artifacts.signatures import file_reader, image_meta

    if c.artifact_type:
        return {"artifact_type": c.artifact_type}
    digest = c.image_digest
    read = file_reader(path_of)
    attached = []
    for a in targets:
        if a.kind == "oci-image" and (r := OciImage.from_target(a)).subject == digest and r.name == c.name:
            data = read("sha256:" + a.blob.digest, a.blob.size)
            if data is not None:
                attached.append((ref_name(a), data))
    return image_meta(digest, attached, read)


def allowed_targets(targets: list[Target], blocked: set[str]) -> list[Target]:
    """The targets to publish when ``blocked`` artifacts are left out: their own targets, and
    shared blobs and manifests that only they used."""
    if not blocked:
        return targets
    # the signatures and attestations attached to a blocked image are left out with it
    images = [(t, OciImage.from_target(t)) for t in targets if t.kind == "oci-image"]
    gone = {(c.name, c.image_digest) for t, c in images if str(c.key()) in blocked}
    blocked = blocked | {str(c.key()) for t, c in images if c.subject and (c.name, c.subject) in gone}
    version_of = {c.filename: c.version for t in targets if t.kind == "python" for c in [PythonFile.from_target(t)]}
    keep_oci: set[str] = set()
    for _t, c in images:
        if str(c.key()) not in blocked:
            keep_oci.update(c.blob_hexes())
    out = []
    for t in targets:
        key = target_key(t)
        if key is not None and key in blocked:
            continue
        if t.kind == "python-metadata" and _wheel_key(PythonMetadata.from_target(t), version_of) in blocked:
            continue
        if t.kind in ("oci-manifest", "oci-blob") and t.blob.digest not in keep_oci:
            continue
        out.append(t)
    return out


def _wheel_key(m: PythonMetadata, version_of: dict[str, str]) -> str:
    """The artifact of the wheel a core metadata target belongs to."""
    return artifact_key("python", m.name, str(version_of.get(m.of)))


def waiting_artifacts(targets: list[Target], path_of: Callable[[str], Path], available: Callable[[str], bool]) -> set[str]:
    """Artifacts some of whose blobs are neither in this bundle (volume) nor in the mirror: they
    wait for another volume, and nothing of them is published meanwhile."""
    by_path = {t.path: t for t in targets}
    waiting: set[str] = set()
    for t in targets:
        key = target_key(t)
        if key is None:
            continue
        need = {t.blob.digest}
        c = record_of(t)
        if isinstance(c, PythonFile) and c.metadata in by_path:
            need.add(by_path[c.metadata].blob.digest)
        elif isinstance(c, OciImage):
            need.update(c.blob_hexes())
        elif isinstance(c, ModelTarget) and available(t.blob.digest):
            need.update(f["sha256"] for f in json.loads(path_of(t.blob.digest).read_bytes())["files"])
        if not all(available(d) for d in need):
            waiting.add(key)
    # an image waits for the signatures attached to it (its policy may require one)
    images = [OciImage.from_target(t) for t in targets if t.kind == "oci-image"]
    late = {(c.name, c.subject) for c in images if c.subject and str(c.key()) in waiting}
    waiting |= {str(c.key()) for c in images if not c.subject and (c.name, c.image_digest) in late}
    return waiting
