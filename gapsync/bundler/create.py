"""``bundle create``: spec (or lock) -> cache -> signed TUF release -> bundle file + .minisig.

The state of the channel advances only after the bundle is complete on disk, so an interrupted
run leaves the channel as it was (and a ``.partial`` file that no reader mistakes for a bundle);
the re-run reuses every blob already in the cache.
"""

from __future__ import annotations

import json
import os
import platform
import threading
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from gapsync import __version__, fsutil
from gapsync.assess import advisory_file, load_advisories, scan_subjects
from gapsync.audit import AuditLog
from gapsync.bundle import minisign
from gapsync.bundle.archive import BundleBody, bundle_file_name
from gapsync.bundle.keys import SigningKey
from gapsync.bundle.parity import check_parity_names, write_parity
from gapsync.bundle.receipt import read_receipt
from gapsync.bundle.records import (
    ADVISORIES_PATH,
    BUNDLE_INFO_PATH,
    BUNDLE_LEVEL,
    POLICY_PATH,
    SBOM_PATH,
    AdvisoriesTarget,
    Artifact,
    ArtifactFile,
    BundleInfo,
    BundleInfoTarget,
    ChartInfo,
    CondaPackage,
    ModelBlob,
    ModelTarget,
    OciBlob,
    OciImage,
    OciManifest,
    PolicyTarget,
    PythonFile,
    PythonMetadata,
    SbomTarget,
    record_of,
)
from gapsync.bundle.volumes import (
    Part,
    blob_tar_size,
    hash_parts,
    metadata_tar_size,
    parts_table,
    plan_volumes,
    write_volumes,
)
from gapsync.bundler import history
from gapsync.bundler.cache import BlobCache
from gapsync.bundler.fetch import FetchItem, fetch_all, tty_progress
from gapsync.bundler.http import remember_spec_credentials
from gapsync.bundler.lock import read_lock
from gapsync.bundler.per_target import differences
from gapsync.bundler.resolve import plan_fetch, resolve_spec
from gapsync.bundler.sources import oci
from gapsync.bundler.spec import load_spec
from gapsync.bundler.subjects import build_subjects, image_key, model_key, python_key
from gapsync.bundler.trust_repo import ChannelRepo
from gapsync.errors import FetchError, GapsyncError, InputError, PolicyBlockedError
from gapsync.hashing import check_free_space, read_chunks
from gapsync.locking import exclusive
from gapsync.model import BlobRef, Target
from gapsync.policies.schema import load_policy
from gapsync.redact import redact_url
from gapsync.scanner.artifacts.wheel_metadata import core_metadata_blob, requires_python


@dataclass
class CreateResult:
    bundle: Path | None
    signature: Path | None
    channel: str
    version: int
    targets: list[Target]
    bundle_size: int
    downloaded: int
    artifacts: list[dict] = field(default_factory=list)
    kind: str = "full"
    carried: int = 0  # blobs in the bundle (a delta leaves out what the other side has)
    nothing_new: bool = False
    blocked: list[str] = field(default_factory=list)
    volumes: list[Path] = field(default_factory=list)
    parity: list[Path] = field(default_factory=list)
    version_differences: dict[str, dict[str, str]] = field(default_factory=dict)  # project -> {target: version}
    lock: object = field(default=None, repr=False)  # the Lock this bundle was made from (sync keeps it)
    streamed: int = 0  # blobs written into the bundle while they downloaded (BundleBody)
    not_cached: int = 0  # of those, blobs written into the bundle only (--no-cache)

    def to_dict(self) -> dict:
        return {"bundle": str(self.bundle) if self.bundle else None, "signature": str(self.signature) if self.signature else None,
                "channel": self.channel, "version": self.version, "targets": len(self.targets), "bundle_size": self.bundle_size,
                "downloaded_bytes": self.downloaded, "kind": self.kind, "blobs_carried": self.carried,
                "nothing_new": self.nothing_new, "blocked": self.blocked, "volumes": [str(v) for v in self.volumes],
                "parity": [str(p) for p in self.parity], "artifacts": self.artifacts,
                "version_differences": self.version_differences, "blobs_written_while_downloading": self.streamed,
                "blobs_not_cached": self.not_cached}


@dataclass
class DeltaOptions:
    """What the other side already has: ``history`` (every version this channel shipped), or a
    verified receipt's inventory. ``only_if_changed``: exit "nothing new" without a bundle when
    the targets equal the last shipped version's (the scheduled job)."""

    base: str | None = None  # None (full) | "history" | "receipt"
    receipt: Path | None = None
    receipt_key: Path | None = None
    only_if_changed: bool = False


def python_targets(files: list, cache: BlobCache) -> tuple[list[Target], list[Artifact]]:
    """One target per file, plus one per wheel's core metadata (PEP 658)."""
    targets: list[Target] = []
    artifacts: dict[tuple[str, str], list[ArtifactFile]] = {}
    for f in sorted(files, key=lambda f: (f.name, f.filename)):
        blob = BlobRef(f.sha256, cache.size(f.sha256))
        path = f"python/{f.name}/{f.filename}"
        rec = PythonFile(name=f.name, version=f.version, filename=f.filename, requires_python=f.requires_python,
                         yanked=f.yanked, tags=tuple(f.targets), upstream=redact_url(f.url))
        if f.filename.endswith(".whl"):
            digest, size, meta = core_metadata_blob(cache, f.sha256, f.filename)
            rec = replace(rec, requires_python=requires_python(meta) or f.requires_python, metadata=f"{path}.metadata")
            targets.append(Target(f"{path}.metadata", BlobRef(digest, size),
                                  PythonMetadata(name=f.name, of=f.filename).to_dict()))
        targets.append(Target(path, blob, rec.to_dict()))
        artifacts.setdefault((f.name, f.version), []).append(ArtifactFile(
            path=path, filename=f.filename, sha256=f.sha256, size=blob.size, targets=tuple(f.targets)))
    return targets, [Artifact(kind="python", name=n, version=v, files=tuple(fs)) for (n, v), fs in artifacts.items()]


def image_targets(plans: list[oci.ImagePlan], cache: BlobCache) -> tuple[list[Target], list[Artifact]]:
    """One target per image reference (its top manifest), per platform manifest and per blob;
    a blob shared by several images is one target, carried once."""
    from gapsync.oci import hex_of

    targets: dict[str, Target] = {}
    artifacts = []
    for p in plans:
        img = p.image
        top_hex = hex_of(p.top_digest)
        where = f"{img.name}:{img.tag}" if img.tag else f"{img.name}@{img.digest}"
        unique: dict[str, int] = {}
        for d, (data, media_type, plat) in p.manifests.items():
            targets.setdefault(f"oci/manifest/sha256/{hex_of(d)}", Target(
                f"oci/manifest/sha256/{hex_of(d)}", BlobRef(hex_of(d), len(data)),
                OciManifest(media_type=media_type, platform=plat).to_dict()))
            unique[d] = len(data)
        for d, info in p.blobs.items():
            size = cache.size(hex_of(d))
            targets.setdefault(f"oci/blob/sha256/{hex_of(d)}", Target(
                f"oci/blob/sha256/{hex_of(d)}", BlobRef(hex_of(d), size), OciBlob(media_type=info["media_type"]).to_dict()))
            unique[d] = size
        # an OCI artifact (chart, signature, SBOM): its type, the image it is attached to, the chart facts
        rec = OciImage(name=img.name, tag=img.tag, digest=p.top_digest, upstream_digest=img.digest,
                       media_type=img.media_type, platforms=tuple(img.platforms),
                       missing_platforms=tuple(img.missing_platforms), manifests=tuple(sorted(p.manifests)),
                       blobs=tuple(sorted(p.blobs)), source=img.ref, artifact_type=img.artifact_type,
                       subject=img.subject, chart=None if img.chart is None else ChartInfo.from_dict(img.chart))
        targets[f"oci/image/{where}"] = Target(f"oci/image/{where}", BlobRef(top_hex, len(p.top)), rec.to_dict())
        artifacts.append(Artifact(kind="oci", name=img.name, version=img.tag or img.digest, digest=p.top_digest,
                                  platforms=tuple(img.platforms), missing_platforms=tuple(img.missing_platforms),
                                  size=len(p.top) + sum(unique.values()), blobs=dict(unique),
                                  artifact_type=img.artifact_type or None, subject=img.subject or None,
                                  chart=img.chart or None))
    return sorted(targets.values(), key=lambda t: t.path), artifacts


def model_targets(models: list, cache: BlobCache) -> tuple[list[Target], list[Artifact]]:
    """One target per model revision (its manifest: files, commit, metadata) and one per
    distinct file, so a file shared by two revisions or two models is carried once."""
    from gapsync.bundle.model_files import manifest

    targets: dict[str, Target] = {}
    artifacts = []
    for m in models:
        for f in m.files:
            if not cache.has(f["sha256"]):
                raise GapsyncError(f"{m.name}: {f['path']} ({f['sha256'][:16]}…) is not in the cache; run gapsync resolve again")
            f["size"] = cache.size(f["sha256"])
            path = f"model/blob/sha256/{f['sha256']}"
            targets.setdefault(path, Target(path, BlobRef(f["sha256"], f["size"]), ModelBlob().to_dict()))
        data = manifest(m)
        digest, size = cache.put_bytes(data, what=f"{m.name} manifest")
        kind = getattr(m, "kind", "model")  # "dataset": a Hub dataset repo, laid out as datasets--org--name
        path = f"{kind}/{m.source}/{m.name}@{m.revision}"
        total = sum(f["size"] for f in m.files)
        targets[path] = Target(path, BlobRef(digest, size), ModelTarget(
            kind=kind, source=m.source, name=m.name, revision=m.revision, commit=m.commit,
            license=m.meta.get("license"), library=m.meta.get("library"), formats=tuple(m.meta.get("formats", [])),
            origin=redact_url(m.meta.get("origin")), files=len(m.files), size=total).to_dict())
        artifacts.append(Artifact(kind=kind, name=m.name, version=m.revision, source=m.source, commit=m.commit,
                                  license=m.meta.get("license"), formats=tuple(m.meta.get("formats", [])), size=total,
                                  files=tuple(ArtifactFile(path=f["path"], filename=f["path"], sha256=f["sha256"],
                                                           size=f["size"]) for f in m.files)))
    return sorted(targets.values(), key=lambda t: t.path), artifacts


def conda_targets(section: dict | None, cache: BlobCache) -> tuple[list[Target], list[Artifact]]:
    """One target per conda package file, at ``conda/<channel>/<subdir>/<file>``; its custom
    fields carry the channel's repodata record, from which the air side writes repodata.json.
    One artifact per name and version (all its builds and subdirs), as for Python packages."""
    from gapsync.bundler.sources.conda import package_key, target_path

    targets: list[Target] = []
    artifacts: dict[str, Artifact] = {}
    for p in (section or {}).get("packages", []):
        blob = BlobRef(p["sha256"], cache.size(p["sha256"]))
        rec = p.get("record") or {}
        path = target_path(p)
        targets.append(Target(path, blob, CondaPackage(
            name=p["name"], version=p["version"], build=p["build"], subdir=p["subdir"], filename=p["filename"],
            channel=p["channel"], channel_name=p["channel_name"], depends=tuple(rec.get("depends", [])),
            license=rec.get("license"), platforms=tuple(p.get("platforms", [])), upstream=p["url"], record=rec).to_dict()))
        art = artifacts.setdefault(package_key(p), Artifact(kind="conda", name=p["name"], version=p["version"],
                                                            channel=p["channel"], license=rec.get("license")))
        artifacts[package_key(p)] = replace(art, files=(*art.files, ArtifactFile(
            path=path, filename=p["filename"], sha256=p["sha256"], size=blob.size, targets=tuple(p.get("platforms", [])),
            subdir=p["subdir"], build=p["build"])))
    return sorted(targets, key=lambda t: t.path), list(artifacts.values())


@dataclass
class ScanOptions:
    """What decides: the policy (a path or a shipped name), the advisory store, and whether a
    bundle without the blocked artifacts is wanted (``--allow-partial``)."""

    policy: str | Path | None = None
    advisories: Path | None = None
    allow_partial: bool = False
    report: Path | None = None
    max_volume_size: int | None = None  # split into volumes of at most this many bytes
    parity: int = 0  # parity volumes (any this many lost or damaged volumes can be rebuilt)
    no_cache: bool = False  # model and dataset files go into the bundle only, never into the cache


def prepare(spec, lock_path: Path | None, cache: BlobCache, jobs: int, tee=None):
    """Resolve (or read the lock) and fetch every blob into the cache: what create and
    ``scan --spec`` share. Returns (lock, image plans, fetch results). ``tee``: see
    ``fetch.fetch_one`` (create writes each download into the bundle as it arrives)."""
    remember_spec_credentials(spec)  # the lock's URLs carry no user info: it goes to its origin from here
    if lock_path is not None:
        lock = read_lock(lock_path)
        if lock.spec_digest != spec.digest():
            raise InputError(f"{lock_path}: made from another version of {spec.path}; run gapsync resolve again")
    else:
        lock = resolve_spec(spec, cache, jobs)
    items, plans = plan_fetch(spec, lock, cache)  # each record through its source (bundler/sources/base.py)
    if tee is not None and not tee.wanted(items, cache, lock, plans):
        tee = None
    fetched = fetch_all(cache, items, jobs, progress=tty_progress, tee=tee)
    return lock, plans, fetched


def scan_spec(spec_path: Path, lock_path: Path | None, cache: BlobCache, jobs: int, scan: ScanOptions,
              now: datetime | None = None):
    """``gapsync scan --spec``: everything ``bundle create`` would decide, without a bundle."""
    spec = load_spec(spec_path)
    lock, plans, _ = prepare(spec, lock_path, cache, jobs)
    policy = load_policy(scan.policy)
    return scan_subjects(build_subjects(lock, plans, cache), policy, load_advisories(advisory_file(scan.advisories)),
                         now or datetime.now(UTC))


def create_bundle(spec_path: Path, lock_path: Path | None, state: Path, keys: list[SigningKey], out_dir: Path,
                  cache: BlobCache, jobs: int = 8, expires: timedelta = timedelta(days=30),
                  now: datetime | None = None, scan: ScanOptions | None = None,
                  delta: DeltaOptions | None = None) -> CreateResult:
    spec = load_spec(spec_path)
    repo = ChannelRepo(state, spec.channel)
    audit = AuditLog(state / "audit.log")
    if not keys:
        raise InputError("bundle create: give the signing key with --key")
    with exclusive(repo.dir / ".lock", f"channel state {repo.dir}"):
        try:
            result = _create(spec, lock_path, repo, keys, out_dir, cache, jobs, expires, now, scan or ScanOptions(),
                             delta or DeltaOptions())
        except GapsyncError as e:
            audit.append("bundle.create", "error", spec=str(spec_path), channel=spec.channel, reason=str(e))
            raise
    if result.nothing_new:
        audit.append("bundle.create", "nothing-new", spec=str(spec_path), channel=spec.channel)
        return result
    audit.append("bundle.create", "ok", spec=str(spec_path), channel=spec.channel, version=result.version,
                 bundle=result.bundle.name if result.bundle else None, bundle_size=result.bundle_size, targets=len(result.targets),
                 kind=result.kind, blobs_carried=result.carried, blocked=result.blocked,
                 signer=keys[0].public.tuf_key().keyid,
                 digests={t.path: t.blob.digest for t in result.targets if t.kind == "python"})
    return result


def _known_digests(repo: ChannelRepo, delta: DeltaOptions) -> tuple[set[str], dict]:
    """What the other side has, and how we know (for bundle.json's ``base``)."""
    if delta.base == "receipt":
        if not delta.receipt or not delta.receipt_key:
            raise InputError("a delta from a receipt needs --receipt FILE and --receipt-key AIR.pub")
        body = read_receipt(delta.receipt, delta.receipt_key)
        return set(body["blobs"]), {"source": "receipt", "created": body["created"], "host": body.get("host"),
                                    "version": (body.get("channels", {}).get(repo.channel) or {}).get("version")}
    if delta.base == "history":
        shipped = history.versions(repo.dir)
        if shipped:
            return history.shipped_digests(repo.dir), {"source": "history", "version": shipped[-1]}
    return set(), {}


# Write each download into the bundle as it arrives (BundleBody: a format 3 bundle, its
# metadata after its blobs), by default whenever something downloads. Until session 8 only what
# fit in what the kernel holds unflushed (about 4.7 GB here): beyond it, eight downloads writing
# two copies each side by side slowed the download more than the tail saved. With large downloads
# taking turns in ``BODY_LANES`` and the hash following the body, writing while downloading was
# the faster at 16 GB too (29.9 s against 45.2 s written after the download; docs/performance.md
# "Session 8"). "0": never, which also keeps every bundle readable by a gapsync older than format 3
# (``--no-cache`` is then refused); "1": the same as unset.
WRITE_WHILE_DOWNLOADING_ENV = "GAPSYNC_WRITE_WHILE_DOWNLOADING"


def _write_while_downloading(pending: int) -> bool:
    """Whether to write ``pending`` downloaded bytes into the bundle as they arrive (see above)."""
    if os.environ.get(WRITE_WHILE_DOWNLOADING_ENV) == "0":
        return False
    return pending > 0


def _body_tee(spec, version: int, now: datetime, out_dir: Path, scan: ScanOptions, known: set[str]) -> _BodyTee | None:
    """Where the downloads would also go, or None: volumes are planned from the finished blob
    set. ``--no-cache`` needs the body (the files it downloads have no other place to go): where
    there can be none it is refused, before anything downloads, saying why."""
    why = ("--max-volume-size (volumes are planned once every blob is there)" if scan.max_volume_size
           else f"{WRITE_WHILE_DOWNLOADING_ENV}=0" if os.environ.get(WRITE_WHILE_DOWNLOADING_ENV) == "0" else None)
    if why is not None:
        if scan.no_cache:
            raise InputError(f"--no-cache writes each download straight into the bundle, which cannot be done with {why}; "
                             "leave out --no-cache")
        return None
    return _BodyTee(out_dir / bundle_file_name(spec.name, spec.channel, version), int(now.timestamp()), known,
                    no_cache=scan.no_cache)


def _create(spec, lock_path, repo: ChannelRepo, keys, out_dir: Path, cache: BlobCache, jobs, expires, now,
            scan: ScanOptions, delta: DeltaOptions) -> CreateResult:
    now = (now or datetime.now(UTC)).replace(microsecond=0)
    known, base = _known_digests(repo, delta)
    absent = [d for d in (out_dir, *out_dir.parents) if not d.exists()]  # what this run creates
    tee = None
    try:
        try:  # made now (the downloads may write the bundle), removed again below if nothing is written
            out_dir.mkdir(parents=True, exist_ok=True)
            with fsutil.Dir(out_dir):
                pass
        except OSError as e:  # a file or a dangling link where the directory should be, no permission...
            raise InputError(f"{out_dir}: cannot write the bundle there ({e.strerror or e})") from e
        tee = _body_tee(spec, repo.next_version(), now, out_dir, scan, known)
        return _create_into(spec, lock_path, repo, keys, out_dir, cache, jobs, expires, now, scan, delta, known, base,
                            tee)
    finally:
        if tee is not None and tee.body is not None:
            tee.body.abort()  # nothing when the writer took it over; else the .partial goes
        for d in absent:  # no bundle (nothing new, a failure, Ctrl-C): no directory left either
            try:
                d.rmdir()  # only if empty; never follows a link
            except OSError:
                break


# How many large downloads (``LARGE_BLOB`` bytes or more) write into the bundle's body side by
# side. The signature's BLAKE2b follows the body from its first byte on, so it can only pass a
# member once that member is complete: eight equal shards downloading at once finish together,
# and seven of them were then left to hash after the download (16 GB, --no-cache: 41.4 s, the
# download 24.8 s of it). Two at a time the download took as long here and the hash kept up
# (28.1 s; docs/performance.md "Session 8"). Small files are not held back, and the other
# downloads keep ``--jobs``. A link whose single connections are slow may want more.
BODY_LANES_ENV = "GAPSYNC_BODY_LANES"
BODY_LANES = 2
LARGE_BLOB = 64 << 20


def _body_lanes() -> int:
    value = os.environ.get(BODY_LANES_ENV, "")
    if not value:
        return BODY_LANES
    if not value.isdigit() or not 1 <= int(value) <= 64:
        raise InputError(f"{BODY_LANES_ENV}={value!r}: expected a whole number from 1 to 64")
    return int(value)


class _BodyTee:
    """What ``fetch_all`` asks where a download also goes: a member of the bundle's body, for a
    blob the bundle will carry (the other side does not have it). The body (the bundle's
    ``.partial``) is created only once ``wanted`` says the downloads are worth it."""

    def __init__(self, path: Path, mtime: int, known: set[str], no_cache: bool = False):
        self.path, self.mtime, self.known = path, mtime, known
        self.body: BundleBody | None = None
        self.no_cache = no_cache
        self.hold: frozenset[str] = frozenset()  # blobs written into the body only (--no-cache)
        self._lanes = threading.BoundedSemaphore(_body_lanes())  # checked before anything downloads

    def ordered(self, item: FetchItem) -> bool:
        """A large download that goes into the body: it waits for a lane (``BODY_LANES``)."""
        return self.body is not None and self._takes(item) and (item.size or 0) >= LARGE_BLOB

    def lane(self, item: FetchItem) -> AbstractContextManager[object]:
        return self._lanes if self.ordered(item) else nullcontext()

    def _takes(self, item: FetchItem) -> bool:
        return item.sha256 is not None and item.sha256 not in self.known and item.size is not None

    def wanted(self, items: list[FetchItem], cache: BlobCache, lock, plans: list[oci.ImagePlan]) -> bool:
        """Whether these downloads are worth writing into the bundle as they arrive; if so,
        the body is opened here. With ``--no-cache`` they always are, when a model or dataset
        file is among them (``_held_digests``)."""
        pending_items = [i for i in {i.sha256: i for i in items if self._takes(i)}.values() if not cache.has(i.sha256 or "")]
        pending = sum(i.size or 0 for i in pending_items)
        if self.no_cache:
            self.hold = frozenset(_held_digests(lock, plans) & {i.sha256 or "" for i in pending_items})
        if not self.hold and not _write_while_downloading(pending):
            return False
        self.body = BundleBody(self.path, self.mtime)
        return True

    def __call__(self, item: FetchItem):
        if self.body is None or not self._takes(item):
            return None
        slot = self.body.slot(item.sha256, item.size)  # type: ignore[arg-type]
        if item.sha256 in self.hold:
            if slot is None:  # --no-cache: no other place for it (a write into the body failed before)
                raise FetchError(f"{item.what}: could not be written into the bundle "
                                 f"({self.body.broken or 'it is closed'}); nothing was kept")
            slot.held = True
        return slot


def _held_digests(lock, plans: list[oci.ImagePlan]) -> set[str]:
    """The blobs ``--no-cache`` keeps out of the cache: the files of models and datasets (where
    the bytes are), and only those no other artifact shares. The model scanner reads them from
    the bundle's body (``fsutil.open_blob``); the readers of wheels, layers and conda packages
    take a path, and a held blob refuses to be one (``fsutil.HeldPath``), so those stay cached."""
    from gapsync.oci import hex_of

    model_files = {f["sha256"] for m in lock.models + lock.datasets for f in m.files}
    others = {f.sha256 for f in lock.files} | {p["sha256"] for p in (lock.conda or {}).get("packages", [])}
    for p in plans:
        others |= {hex_of(d) for d in (*p.blobs, *p.manifests)}
    return model_files - others


def _create_into(spec, lock_path, repo: ChannelRepo, keys, out_dir: Path, cache: BlobCache, jobs, expires,
                 now: datetime, scan: ScanOptions, delta: DeltaOptions, known: set[str], base: dict,
                 tee: _BodyTee | None) -> CreateResult:
    lock, plans, fetched = prepare(spec, lock_path, cache, jobs, tee=tee)
    body = tee.body if tee is not None else None
    # scan every artifact, let the policy decide, and carry only what it allows
    policy = load_policy(scan.policy)
    advisories_file = advisory_file(scan.advisories)
    outcome = scan_subjects(build_subjects(lock, plans, cache), policy, load_advisories(advisories_file), now)
    blocked = set(outcome.blocked())
    py_targets, py_artifacts = python_targets(lock.files, cache)
    artifacts = [*py_artifacts, *image_targets(plans, cache)[1], *model_targets(lock.models + lock.datasets, cache)[1],
                 *conda_targets(lock.conda, cache)[1]]
    for i, a in enumerate(artifacts):
        key = str(a.key())
        sigs = [r["message"] for r in outcome.decisions[key].reasons if r.get("rule") == "images.signature"] \
            if key in outcome.decisions and a.kind == "oci" else []  # images.require_signature: what verified, by which key
        artifacts[i] = replace(a, license=outcome.licenses.get(key, a.license),
                               decision=outcome.decisions[key].action.value if key in outcome.decisions else "allow",
                               signatures=tuple(sigs) or None)
    allowed_files = {f.filename for f in lock.files if python_key(f) not in blocked}
    targets = [t for t in py_targets if _python_file_name(t) in allowed_files]
    gone = {(p.image.name, p.image.digest) for p in plans if image_key(p) in blocked}  # and what is attached to them
    targets += image_targets([p for p in plans if image_key(p) not in blocked and (p.image.name, p.image.subject) not in gone],
                             cache)[0]
    targets += model_targets([m for m in lock.models + lock.datasets if model_key(m) not in blocked], cache)[0]
    targets += [t for t in conda_targets(lock.conda, cache)[0] if str(CondaPackage.from_target(t).key()) not in blocked]
    version = repo.next_version()
    diffs = differences(lock.pins)  # targets that got different versions of a project: said, not hidden
    bundle_info = BundleInfo(
        format=1, name=spec.name, channel=spec.channel, version=version, kind="full", created=now.isoformat(),
        producer=f"gapsync {__version__}", host=platform.node(), spec_digest=spec.digest(),
        lock_digest=_digest_text(lock.dumps()), artifacts=tuple(artifacts), findings=tuple(outcome.finding_dicts()),
        decisions=tuple(outcome.decision_dicts()), advisories=outcome.advisories, policy=outcome.policy,
        python_version_differences=diffs or None)
    info = bundle_info.to_dict()
    if scan.report:
        from gapsync.reports.html import render_html

        fsutil.write_atomic(scan.report, render_html(info, [k.public.tuf_key().keyid for k in keys]).encode())
    if blocked and not scan.allow_partial:
        raise PolicyBlockedError(f"{spec.path}: the policy {policy.name} blocks {len(blocked)} artifact(s): "
                                 + outcome.blocked_summary()
                                 + ("" if scan.report else " (see --report for the details)"), outcome.decision_dicts())
    # bundle-level targets: the policy and the advisory snapshot it was scanned with
    digest, size = cache.put_bytes(Path(policy.source).read_bytes(), what=POLICY_PATH)
    targets.insert(0, Target(POLICY_PATH, BlobRef(digest, size), PolicyTarget(name=policy.name).to_dict()))
    if advisories_file is not None:
        with advisories_file.open("rb") as fh:
            digest, size = cache.put(read_chunks(fh), what=str(advisories_file), sha256=None)
        targets.insert(0, Target(ADVISORIES_PATH, BlobRef(digest, size),
                                 AdvisoriesTarget.from_dict({"kind": "advisories", **(outcome.advisories or {})},
                                                            ADVISORIES_PATH).to_dict()))
    if delta.only_if_changed:  # the scheduled job: no bundle when nothing would change on the other side
        last = {p: d for p, d in history.last_targets(repo.dir).items() if p not in BUNDLE_LEVEL}
        if last and last == {t.path: t.blob.digest for t in targets}:
            return CreateResult(None, None, spec.channel, version - 1, targets, 0, sum(r.downloaded for r in fetched),
                                info["artifacts"], nothing_new=True, blocked=sorted(blocked), version_differences=diffs,
                                lock=lock)
    if base:
        bundle_info = replace(bundle_info, kind="delta", base=base)
        info = bundle_info.to_dict()
    info_bytes = _info_bytes(info)
    extra = [(BUNDLE_INFO_PATH, info_bytes, BundleInfoTarget().to_dict())]
    try:
        from gapsync.reports.sbom import build_sbom

        extra.append((SBOM_PATH, build_sbom(info), SbomTarget().to_dict()))
    except ImportError:
        pass
    for path_, data, custom in reversed(extra):  # bundle.json first: inspect finds it early
        digest, size = cache.put_bytes(data, what=path_)
        targets.insert(0, Target(path_, BlobRef(digest, size), custom))
    order: list[BlobRef] = []  # the blobs this bundle carries, bundle.json first
    seen: set[str] = set(known)  # a delta leaves out what the other side has
    for t in targets:
        if t.blob.digest not in seen:
            seen.add(t.blob.digest)
            order.append(t.blob)
    plan = None
    if scan.max_volume_size:
        plan = _plan_volumes(repo, targets, order, keys, expires, now, scan.max_volume_size, bundle_info, cache)
        order[0] = targets[0].blob  # bundle.json now says how many volumes there are; every volume carries it
        for p in plan:
            p.insert(0, targets[0].blob.digest)
    # format 2 when a blob spans volumes in parts (their table is in bundle.json's target)
    fmt = 2 if BundleInfoTarget.from_target(targets[0]).parts is not None else 1
    if body is not None:
        why = body.usable({b.digest: b.size for b in order}) if plan is None else "volumes"
        if why is None:
            fmt = 3  # the blobs that downloaded are the start of the file: the metadata goes after them
            _set_format(targets, order, cache, bundle_info, fmt)
        else:
            from gapsync.log import event, progress_logs

            if progress_logs():
                event("bundle.written-after-download", reason=why)
            carried = {b.digest for b in order}
            for d in cache.held():  # --no-cache: the writer copies from the cache, so they go there after all
                if d in carried:
                    cache.keep(d)
            body.abort()
            body = None
    release = repo.sign_release(targets, keys, expires, now, fmt=fmt)
    assert release.version == version
    in_body = body.digests() if body is not None else {}  # on disk already
    check_free_space(out_dir, sum(b.size for b in order if b.digest not in in_body)
                     * (1 + scan.parity // max(1, len(plan or [1]))), "the bundle")
    comment = f"gapsync bundle channel:{spec.channel} version:{version} timestamp:{int(now.timestamp())}"

    def sign(p: Path, file_hash: bytes) -> None:
        minisign.write_signature(p.with_name(p.name + ".minisig"), keys[0], file_hash, f"{comment} file:{p.name}")

    stem = bundle_file_name(spec.name, spec.channel, version).removesuffix(".gapsync")
    if scan.parity:  # a planted link at a parity name stops the run before a volume is written
        check_parity_names(out_dir, stem, scan.parity)
    volumes = write_volumes(out_dir, stem, release.members, plan or [[b.digest for b in order]], cache.path,
                            {b.digest: b.size for b in order}, int(now.timestamp()), sign, scan.max_volume_size,
                            shared=frozenset({targets[0].blob.digest}), body=body)
    streamed = len(body.digests()) if body is not None else 0
    not_cached = len(set(cache.held()) & set(in_body))
    parity = write_parity(volumes, scan.parity, out_dir) if scan.parity and len(volumes) > 0 else []
    size = sum(v.stat().st_size for v in volumes)
    carried = {b.digest for b in order}
    repo.commit(release, {"version": version, "bundle": volumes[0].name, "volumes": len(volumes), "parity": len(parity),
                          "created": now.isoformat(), "size": size, "targets": len(targets), "kind": info["kind"],
                          "carried": len(carried)})
    history.record(repo.dir, version, targets, carried)
    return CreateResult(volumes[0], volumes[0].with_name(volumes[0].name + ".minisig"), spec.channel, version, targets,
                        size, sum(r.downloaded for r in fetched), info["artifacts"], kind=info["kind"], carried=len(carried),
                        blocked=sorted(blocked), volumes=volumes, parity=parity, version_differences=diffs, lock=lock,
                        streamed=streamed, not_cached=not_cached)


def _info_bytes(info: dict) -> bytes:
    """bundle.json's bytes: one serialisation wherever it is written (its first form, the volume
    count, the format)."""
    return json.dumps(info, indent=1, sort_keys=True).encode()


def _set_format(targets: list[Target], order: list[BlobRef], cache: BlobCache, info: BundleInfo, fmt: int) -> None:
    """bundle.json (``targets[0]``) says the bundle's format too: written again with ``fmt``."""
    old = targets[0].blob.digest
    digest, size = cache.put_bytes(_info_bytes(replace(info, format=fmt).to_dict()), what=BUNDLE_INFO_PATH)
    targets[0] = Target(BUNDLE_INFO_PATH, BlobRef(digest, size), targets[0].custom)
    order[:] = [targets[0].blob if b.digest == old else b for b in order]


def _plan_volumes(repo, targets: list[Target], order: list[BlobRef], keys, expires, now, max_size: int,
                  info: BundleInfo, cache: BlobCache) -> list[list[str | Part]]:
    """Split the carried blobs into volumes. Every volume carries all the metadata and bundle.json
    (so any volume, imported first, says it is one of N), which must state N before it is
    signed: the plan reserves room for the metadata (measured by signing once) and for
    bundle.json in every volume, then bundle.json is written with the count and signed for real.
    A blob larger than a volume is split into parts (format 2): their table (volume, offset,
    length, sha256 of each part) goes into the bundle.json target's signed ``custom.parts``,
    which grows the metadata of every volume, so the plan is made again with room for it until
    it fits; then each part is hashed (one read of each split blob)."""
    probe = repo.sign_release(targets, keys, expires, now)
    info_blob = targets[0].blob
    # the count's digits and the signatures vary a little between the probe and the real signing
    reserve = metadata_tar_size(probe.members) + blob_tar_size(info_blob.size + 64) + 4096
    others = [(b.digest, b.size) for b in order if b.digest != info_blob.digest]
    plan = plan_volumes(reserve, others, max_size, split=True)
    info_target = BundleInfoTarget.from_target(targets[0])
    split = False
    for _ in range(8):
        table = parts_table(plan)
        split = bool(table)
        if not split:
            break
        trial = replace(info_target, volumes=len(plan),
                        parts={d: [[v, o, n, "0" * 64] for v, o, n, _h in rows] for d, rows in table.items()})
        probe = repo.sign_release([Target(targets[0].path, info_blob, trial.to_dict()), *targets[1:]], keys, expires, now,
                                  fmt=2)
        need = (metadata_tar_size(probe.members) + blob_tar_size(info_blob.size + 64) + 4096
                + 32 * sum(len(rows) for rows in table.values()))  # digits of the final count and offsets
        if need <= reserve:
            break
        reserve = need + 4096
        plan = plan_volumes(reserve, others, max_size, split=True)
    else:
        raise GapsyncError(f"volumes of {max_size} bytes: the plan of parts does not settle; choose larger volumes")
    if split:
        plan = hash_parts(plan, cache.path)
        info_target = replace(info_target, volumes=len(plan), parts=parts_table(plan))
        info = replace(info, format=2)
    info = replace(info, volumes=len(plan))
    digest, size = cache.put_bytes(_info_bytes(info.to_dict()), what=BUNDLE_INFO_PATH)
    targets[0] = Target(BUNDLE_INFO_PATH, BlobRef(digest, size), info_target.to_dict())
    return plan


def _python_file_name(t: Target) -> str:
    """The wheel or sdist a ``python`` or ``python-metadata`` target belongs to."""
    rec = record_of(t)
    return rec.filename if isinstance(rec, PythonFile) else rec.of if isinstance(rec, PythonMetadata) else ""


def _digest_text(text: str) -> str:
    import hashlib

    return hashlib.sha256(text.encode()).hexdigest()
