"""The connected side's scan subjects: one per artifact of the lock, files from the cache."""

from __future__ import annotations

from gapsync.bundle.records import artifact_key
from gapsync.bundler.cache import BlobCache
from gapsync.bundler.lock import Lock, LockedFile
from gapsync.bundler.sources.oci import ImagePlan
from gapsync.oci import hex_of
from gapsync.scanner.artifacts.wheel_metadata import core_metadata_blob
from gapsync.scanner.subject import ScanSubject, SubjectFile


def python_key(f: LockedFile) -> str:
    return artifact_key("python", f.name, f.version)


def image_key(plan: ImagePlan) -> str:
    return artifact_key("oci", plan.image.name, plan.image.tag or plan.image.digest)


def model_key(m) -> str:
    """``model:`` or ``dataset:`` (a Hub dataset repo) ``name@revision``."""
    return artifact_key(getattr(m, "kind", "model"), m.name, m.revision)


def build_subjects(lock: Lock, plans: list[ImagePlan], cache: BlobCache) -> list[ScanSubject]:
    subjects: dict[str, ScanSubject] = {}
    for f in sorted(lock.files, key=lambda f: (f.name, f.version, f.filename)):
        s = subjects.setdefault(python_key(f), ScanSubject("python", f.name, f.version, [], {"metadata": None}))
        path = cache.path(f.sha256)
        s.files.append(SubjectFile(f.filename, f.sha256, cache.size(f.sha256), path))
        if f.filename.endswith(".whl") and s.meta["metadata"] is None:
            digest, _, _ = core_metadata_blob(cache, f.sha256, f.filename)
            s.meta["metadata"] = cache.path(digest)
    for p in plans:
        files = [SubjectFile(f"layer {d[:19]}", hex_of(d), cache.size(hex_of(d)), cache.path(hex_of(d)), info["media_type"])
                 for d, info in sorted(p.blobs.items()) if "config" not in info["media_type"]]
        subjects[image_key(p)] = ScanSubject("oci", p.image.name, p.image.tag or p.image.digest, files,
                                             {"platforms": p.image.platforms, **_signature_meta(p, plans, cache)})
    for m in lock.models + lock.datasets:
        files = [SubjectFile(f["path"], f["sha256"], cache.size(f["sha256"]), cache.path(f["sha256"]))
                 for f in m.files]
        subjects[model_key(m)] = ScanSubject(m.kind, m.name, m.revision, files,
                                             {"license": m.meta.get("license"), "source": m.source,
                                              "formats": m.meta.get("formats", [])})
    for p in (lock.conda or {}).get("packages", []):
        from gapsync.bundler.sources.conda import package_key

        s = subjects.setdefault(package_key(p), ScanSubject("conda", p["name"], p["version"], [],
                                                            {"channels": [], "expected": {}}))
        path = cache.path(p["sha256"])
        name = f"{p['subdir']}/{p['filename']}"  # one file name may be in several subdirs
        s.files.append(SubjectFile(name, p["sha256"], cache.size(p["sha256"]), path))
        s.meta["channels"] = sorted({*s.meta["channels"], p["channel"]})
        s.meta["record_license"] = (p.get("record") or {}).get("license")
        s.meta["expected"][name] = {"name": p["name"], "version": p["version"], "build": p["build"],
                                             "subdir": p["subdir"]}
    return list(subjects.values())


def _signature_meta(p: ImagePlan, plans: list[ImagePlan], cache: BlobCache) -> dict:
    """The artifact type, or (an image) its digest and the signatures attached to it, for the
    policy's images.require_signature (gapsync/scanner/artifacts/signatures.py)."""
    from gapsync.scanner.artifacts.signatures import file_reader, image_meta

    if p.image.artifact_type:
        return {"artifact_type": p.image.artifact_type}
    attached = [(q.image.ref, q.top) for q in plans if q.image.subject == p.image.digest and q.image.name == p.image.name]
    return image_meta(p.image.digest, attached, file_reader(cache.path))
