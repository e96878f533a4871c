"""The lock (``gapsync.lock``): the spec resolved to exact files with sha256.

JSON with sorted keys and no timestamps, so the same spec and index give byte-identical locks
and a diff shows exactly what moved. Unknown fields are kept and written back (python-tuf's
``unrecognized_fields`` idea), so an older gapsync round-trips a newer lock.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gapsync import fsutil
from gapsync.bundler.http import remember_credentials
from gapsync.errors import InputError
from gapsync.model import SHA256_RE
from gapsync.names import (
    BadName,
    check_image_name,
    check_image_tag,
    check_model,
    check_python_filename,
    check_python_project,
)
from gapsync.redact import redact_url

LOCK_VERSION = 1


@dataclass
class LockedFile:
    name: str  # PEP 503 normalized
    version: str
    filename: str
    url: str
    sha256: str
    size: int | None
    requires_python: str | None
    yanked: str | None
    targets: list[str]
    unrecognized: dict[str, Any] = field(default_factory=dict)

    FIELDS = ("name", "version", "filename", "url", "sha256", "size", "requires_python", "yanked", "targets")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LockedFile:
        d = dict(d)
        kw = {k: d.pop(k) for k in cls.FIELDS if k in d}
        if not SHA256_RE.match(str(kw.get("sha256", ""))):
            raise ValueError(f"file {kw.get('filename')!r}: bad sha256")
        try:  # the importer's rules: a lock never makes the DMZ sign a name the air side refuses
            check_python_project(kw.get("name"))
            check_python_filename(kw.get("filename"))
        except BadName as e:
            raise ValueError(f"file {kw.get('filename')!r}: {e}") from None
        if isinstance(kw.get("url"), str):
            kw["url"] = remember_credentials(kw["url"])
        return cls(**kw, unrecognized=d)

    def to_dict(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in self.FIELDS}
        d["url"] = redact_url(self.url)
        d.update(self.unrecognized)
        return d


@dataclass
class LockedImage:
    """One image reference pinned: the top digest (an index or a manifest) and the platform
    manifests selected from it. Layers are not listed: the manifests name them by digest."""

    ref: str  # as the spec wrote it
    name: str  # registry/repository
    tag: str | None
    digest: str
    media_type: str
    size: int
    platforms: list[str]
    missing_platforms: list[str]
    manifests: list[dict[str, Any]]  # [{digest, media_type, size, platform}] under an index
    rewrite_index: bool = False
    source: dict[str, Any] | None = None  # None: the registry in ``name``; else {kind, location, ref}
    unrecognized: dict[str, Any] = field(default_factory=dict)
    # an OCI artifact (a Helm chart, a signature, an SBOM): its artifactType or config media type;
    # None for a runnable image. Written only when set, so image locks keep their bytes.
    artifact_type: str | None = None
    subject: str | None = None  # a signature or attestation: the digest of the image it is attached to
    chart: dict[str, Any] | None = None  # a Helm chart: {name, version, repo, images: [...]} (charts.py)

    FIELDS = ("ref", "name", "tag", "digest", "media_type", "size", "platforms", "missing_platforms",
              "manifests", "rewrite_index", "source")
    OPTIONAL = ("artifact_type", "subject", "chart")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LockedImage:
        d = dict(d)
        kw = {k: d.pop(k) for k in (*cls.FIELDS, *cls.OPTIONAL) if k in d}
        try:
            check_image_name(kw.get("name"))
            if kw.get("tag") is not None:
                check_image_tag(kw["tag"])
        except BadName as e:
            raise ValueError(f"image {kw.get('ref')!r}: {e}") from None
        return cls(**kw, unrecognized=d)

    def to_dict(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in self.FIELDS if k != "source" or self.source}
        d.update({k: getattr(self, k) for k in self.OPTIONAL if getattr(self, k) is not None})
        d.update(self.unrecognized)
        return d


@dataclass
class LockedModel:
    """A model pinned: its commit (the Hub's, or a digest of the file list for other sources)
    and every file with sha256 and size. ``etag`` is the name the Hugging Face cache gives the
    blob (the git blob sha1 for regular files, the sha256 for LFS files)."""

    source: str  # hf | mlflow | url | path
    name: str
    revision: str  # as asked (a branch, a tag, a version), "main" for sources without revisions
    commit: str  # 40 hex
    files: list[dict[str, Any]]  # [{path, sha256, size, etag, lfs, url?}]
    meta: dict[str, Any] = field(default_factory=dict)  # license, library, formats, origin, ...
    unrecognized: dict[str, Any] = field(default_factory=dict)
    repo_type: str = "model"  # "dataset": a Hub dataset repo (the lock's datasets list); written only then

    FIELDS = ("source", "name", "revision", "commit", "files", "meta")

    @property
    def kind(self) -> str:
        """The artifact kind: "model" or "dataset"."""
        return "dataset" if self.repo_type == "dataset" else "model"

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LockedModel:
        d = dict(d)
        kw = {k: d.pop(k) for k in cls.FIELDS if k in d}
        if d.get("repo_type") in ("model", "dataset"):
            kw["repo_type"] = d.pop("repo_type")
        for f in kw.get("files", []):
            if not SHA256_RE.match(str(f.get("sha256", ""))):
                raise ValueError(f"model {kw.get('name')!r}: file {f.get('path')!r} has a bad sha256")
            if isinstance(f.get("url"), str):
                f["url"] = remember_credentials(f["url"])
        model = cls(**kw, unrecognized=d)
        try:
            check_model(model.name, model.revision, model.commit, [f.get("path") for f in model.files])
        except BadName as e:
            raise ValueError(f"model {kw.get('name')!r}: {e}") from None
        return model

    def to_dict(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in self.FIELDS}
        d["files"] = sorted(({**f, "url": redact_url(f["url"])} if isinstance(f.get("url"), str) else f
                             for f in self.files), key=lambda f: f["path"])
        d["meta"] = {**self.meta, "origin": redact_url(self.meta["origin"])} if isinstance(self.meta.get("origin"), str) \
            else self.meta
        if self.repo_type != "model":
            d["repo_type"] = self.repo_type
        d.update(self.unrecognized)
        return d


@dataclass
class Lock:
    spec_digest: str
    index_url: str | None = None
    pins: dict[str, list[str]] = field(default_factory=dict)  # target id -> ["name==version", ...]
    files: list[LockedFile] = field(default_factory=list)
    images: list[LockedImage] = field(default_factory=list)
    models: list[LockedModel] = field(default_factory=list)
    datasets: list[LockedModel] = field(default_factory=list)  # Hub dataset repos (repo_type "dataset")
    # conda: {channels, specs, platforms, solved, packages: [{channel, channel_name, subdir, filename, url,
    # name, version, build, sha256, size, platforms, record}]} (bundler/sources/conda.py)
    conda: dict[str, Any] | None = None
    unrecognized: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Lock:
        d = dict(d)
        if d.pop("lock_version", None) != LOCK_VERSION:
            raise ValueError(f"unsupported lock_version (this gapsync reads {LOCK_VERSION})")
        lock = cls(spec_digest=d.pop("spec_digest"))
        py = d.pop("python", None)
        if py is not None:
            py = dict(py)
            lock.index_url, lock.pins = remember_credentials(py.pop("index_url")), py.pop("pins")
            lock.files = [LockedFile.from_dict(f) for f in py.pop("files")]
        lock.images = [LockedImage.from_dict(i) for i in d.pop("images", [])]
        lock.models = [LockedModel.from_dict(m) for m in d.pop("models", [])]
        lock.datasets = [LockedModel.from_dict({**m, "repo_type": "dataset"}) for m in d.pop("datasets", [])]
        lock.conda = d.pop("conda", None)
        for p in (lock.conda or {}).get("packages", []):
            if not SHA256_RE.match(str(p.get("sha256", ""))):
                raise ValueError(f"conda package {p.get('filename')!r}: bad sha256")
        lock.unrecognized = d
        return lock

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"lock_version": LOCK_VERSION, "spec_digest": self.spec_digest}
        if self.index_url is not None:
            d["python"] = {"index_url": redact_url(self.index_url), "pins": self.pins,
                           "files": [f.to_dict() for f in sorted(self.files, key=lambda f: (f.name, f.filename))]}
        if self.images:
            d["images"] = [i.to_dict() for i in sorted(self.images, key=lambda i: i.ref)]
        if self.models:
            d["models"] = [m.to_dict() for m in sorted(self.models, key=lambda m: (m.source, m.name, m.revision))]
        if self.datasets:
            d["datasets"] = [m.to_dict() for m in sorted(self.datasets, key=lambda m: (m.name, m.revision))]
        if self.conda is not None:
            d["conda"] = self.conda
        d.update(self.unrecognized)
        return d

    def merge(self, part: Lock) -> None:
        """Add what one spec entry resolved to (a source's partial lock, bundler/sources/base.py):
        each source fills only its own sections, so merging in the spec's order gives the lock
        one walk over the whole spec would."""
        if part.index_url is not None:
            self.index_url, self.pins = part.index_url, part.pins
        self.files += part.files
        self.images += part.images
        self.models += part.models
        self.datasets += part.datasets
        if part.conda is not None:
            self.conda = part.conda
        self.unrecognized.update(part.unrecognized)

    def dumps(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    def write(self, path: Path) -> None:
        fsutil.write_atomic(path, self.dumps().encode())


def read_lock(path: Path) -> Lock:
    try:
        return Lock.from_dict(json.loads(path.read_text()))
    except OSError as e:
        raise InputError(f"{path}: cannot read lock ({e.strerror})") from e
    except (ValueError, KeyError, TypeError) as e:
        raise InputError(f"{path}: not a valid gapsync lock ({e})") from e
