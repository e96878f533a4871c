"""The air side's scan subjects: one per artifact of a verified release, files from staging or
the blob store, so the same scanners and policy run again on this side of the gap."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from gapsync.mirror.targets.oci_layout import ref_name
from gapsync.model import Target
from gapsync.scanner.subject import ScanSubject, SubjectFile


def target_key(t: Target) -> str | None:
    """The artifact a target belongs to (None for bundle-level and shared targets)."""
    c = t.custom
    if t.kind == "python":
        return f"python:{c['name']}@{c['version']}"
    if t.kind == "oci-image":
        return f"oci:{c['name']}@{c.get('tag') or c['digest']}"
    if t.kind in ("model", "dataset"):
        return f"{t.kind}:{c['name']}@{c['revision']}"
    if t.kind == "conda":
        return f"conda:{c['name']}@{c['version']}"
    return None


def build_subjects(targets: list[Target], path_of: Callable[[str], Path]) -> list[ScanSubject]:
    by_path = {t.path: t for t in targets}
    media = {t.blob.digest: t.custom.get("media_type", "") for t in targets if t.kind == "oci-blob"}
    subjects: dict[str, ScanSubject] = {}
    for t in sorted(targets, key=lambda t: t.path):
        key = target_key(t)
        c = t.custom
        if t.kind == "python":
            s = subjects.setdefault(key, ScanSubject("python", c["name"], c["version"], [], {"metadata": None}))
            s.files.append(SubjectFile(c["filename"], t.blob.digest, t.blob.size, path_of(t.blob.digest)))
            meta = by_path.get(str(c.get("metadata") or ""))
            if meta is not None and s.meta["metadata"] is None:
                s.meta["metadata"] = path_of(meta.blob.digest)
        elif t.kind == "oci-image":
            files = [SubjectFile(f"layer {d[:19]}", d.split(":", 1)[1], (p := path_of(d.split(":", 1)[1])).stat().st_size, p,
                                 media.get(d.split(":", 1)[1]))
                     for d in c.get("blobs", []) if "config" not in media.get(d.split(":", 1)[1], "")]
            subjects[key] = ScanSubject("oci", c["name"], c.get("tag") or c["digest"], files,
                                        {"ref": ref_name(t), **_signature_meta(t, targets, path_of)})
        elif t.kind in ("model", "dataset"):
            doc = json.loads(path_of(t.blob.digest).read_bytes())
            files = [SubjectFile(f["path"], f["sha256"], f["size"], path_of(f["sha256"])) for f in doc["files"]]
            subjects[key] = ScanSubject(t.kind, c["name"], c["revision"], files,
                                        {"license": c.get("license"), "source": c.get("source"), "formats": c.get("formats", [])})
        elif t.kind == "conda":
            s = subjects.setdefault(key, ScanSubject("conda", c["name"], c["version"], [], {"channels": [], "expected": {}}))
            name = f"{c['subdir']}/{c['filename']}"  # one file name may be in several subdirs
            s.files.append(SubjectFile(name, t.blob.digest, t.blob.size, path_of(t.blob.digest)))
            s.meta["channels"] = sorted({*s.meta["channels"], str(c.get("channel"))})
            s.meta["record_license"] = (c.get("record") or {}).get("license")
            s.meta["expected"][name] = {k: c.get(k) for k in ("name", "version", "build", "subdir")}
    return list(subjects.values())


def _signature_meta(t: Target, targets: list[Target], path_of: Callable[[str], Path]) -> dict:
    """As on the connected side: the artifact type, or the image's upstream digest and the
    signatures attached to it (targets whose ``subject`` is that digest), verified here again."""
    from gapsync.scanner.artifacts.signatures import file_reader, image_meta

    c = t.custom
    if c.get("artifact_type"):
        return {"artifact_type": c["artifact_type"]}
    digest = str(c.get("upstream_digest") or c.get("digest"))
    read = file_reader(path_of)
    attached = []
    for a in targets:
        if a.kind == "oci-image" and a.custom.get("subject") == digest and a.custom.get("name") == c.get("name"):
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
    gone = {(t.custom.get("name"), t.custom.get("upstream_digest") or t.custom.get("digest")) for t in targets
            if t.kind == "oci-image" and target_key(t) in blocked}
    blocked = blocked | {str(target_key(t)) for t in targets if t.kind == "oci-image" and t.custom.get("subject")
                         and (t.custom.get("name"), t.custom["subject"]) in gone}
    version_of = {t.custom["filename"]: t.custom["version"] for t in targets if t.kind == "python"}
    keep_oci: set[str] = set()
    for t in targets:
        if t.kind == "oci-image" and target_key(t) not in blocked:
            keep_oci.update(d.split(":", 1)[1] for d in [*t.custom.get("manifests", []), *t.custom.get("blobs", [])])
    out = []
    for t in targets:
        key = target_key(t)
        if key is not None and key in blocked:
            continue
        if t.kind == "python-metadata" and f"python:{t.custom['name']}@{version_of.get(t.custom['of'])}" in blocked:
            continue
        if t.kind in ("oci-manifest", "oci-blob") and t.blob.digest not in keep_oci:
            continue
        out.append(t)
    return out


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
        if t.kind == "python" and t.custom.get("metadata") in by_path:
            need.add(by_path[t.custom["metadata"]].blob.digest)
        elif t.kind == "oci-image":
            need.update(d.split(":", 1)[1] for d in [*t.custom.get("manifests", []), *t.custom.get("blobs", [])])
        elif t.kind in ("model", "dataset") and available(t.blob.digest):
            need.update(f["sha256"] for f in json.loads(path_of(t.blob.digest).read_bytes())["files"])
        if not all(available(d) for d in need):
            waiting.add(key)
    # an image waits for the signatures attached to it (its policy may require one)
    late = {(t.custom.get("name"), t.custom.get("subject")) for t in targets
            if t.kind == "oci-image" and t.custom.get("subject") and target_key(t) in waiting}
    waiting |= {str(target_key(t)) for t in targets if t.kind == "oci-image" and not t.custom.get("subject")
                and (t.custom.get("name"), t.custom.get("upstream_digest") or t.custom.get("digest")) in late}
    return waiting
