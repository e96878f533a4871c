"""``import`` and ``bundle verify``: one forward pass over the bundle.

1. read the metadata members; 2. TUF checks against the pinned root and the stored state
(python-tuf's Updater, in scratch space); 3. stream each needed blob into staging, hashing as it
copies, never past the signed length (a part of a blob that spans volumes, format 2, waits in
the mirror's part staging until the blob is whole and checked whole: gapsync/mirror/parts.py); 4. only when every blob the release needs is verified,
move blobs into the store, publish into the targets, then commit the TUF state and the channel
state, all through a publish journal (gapsync/mirror/journal.py). A failure at any step leaves
the published mirror as it was (a failed publish is undone); the audit log records it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from gapsync import faults, fsutil
from gapsync.assess import advisory_file, load_advisories, scan_subjects
from gapsync.audit import AuditLog
from gapsync.bundle.archive import BundleReader, SignedPart, bundle_format, parse_parts
from gapsync.bundle.records import (
    BUNDLE_LEVEL_KINDS,
    BundleInfo,
    BundleInfoTarget,
    ModelTarget,
    check_targets,
)
from gapsync.errors import (
    BundleFormatError,
    DigestMismatchError,
    FetchError,
    GapsyncError,
    PolicyBlockedError,
    PublishError,
)
from gapsync.hashing import WriteBehind, check_free_space, copy_verified
from gapsync.locking import exclusive
from gapsync.mirror import claims
from gapsync.mirror.journal import PublishJournal
from gapsync.mirror.layout import MirrorLayout
from gapsync.mirror.parts import PartStore
from gapsync.mirror.subjects import allowed_targets, build_subjects, waiting_artifacts
from gapsync.mirror.targets.conda_channel import CondaChannel
from gapsync.mirror.targets.hf_cache import HfCache
from gapsync.mirror.targets.oci_layout import OciLayout, ref_name
from gapsync.mirror.targets.pep503 import Pep503Index
from gapsync.mirror.trust import VerifiedRelease, apply_approvals, claimed_channel, verify_release
from gapsync.model import Target
from gapsync.names import BadName, check_model
from gapsync.policies.schema import load_policy

TARGET_CLASSES = (Pep503Index, OciLayout, HfCache, CondaChannel)
KNOWN_KINDS = BUNDLE_LEVEL_KINDS.union(*(c.kinds for c in TARGET_CLASSES))
SMALL_BLOB = 1 << 20
SHOWN_KINDS = {"python", "oci-image", "model", "dataset", "conda"}  # what "N new, M already present" counts (not blobs, pages)
# Signed JSON documents the importer reads whole into memory, by kind: a bundle whose signed
# length for one of them is larger is refused before a byte of it is staged (a bundle.json or a
# model manifest of gigabytes would otherwise be read and parsed in one piece).
MAX_JSON_TARGET = {"bundle-info": 64 << 20, "model": 16 << 20, "dataset": 16 << 20}  # bundle.json as `bundle inspect`; 20,000 files


@dataclass
class ImportOptions:
    """The air side's own policy (a path or a shipped name) and whether to publish what it
    allows when it blocks something (``--allow-partial``)."""

    policy: str | Path | None = None
    allow_partial: bool = False


@dataclass
class ImportResult:
    bundle: Path
    channel: str
    version: int
    nothing_new: bool = False
    verified_only: bool = False
    blobs_read: int = 0
    bytes_read: int = 0
    published: list[str] = field(default_factory=list)
    images: list[str] = field(default_factory=list)  # image references this bundle carries
    decisions: list[dict] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)  # artifacts waiting for another volume
    models: list[tuple[str, str]] = field(default_factory=list)  # (name, revision) this bundle carries
    targets: int = 0
    signers: list[str] = field(default_factory=list)
    files_new: int = 0  # Python files (and other published targets) this import added ...
    files_present: int = 0  # ... and those the mirror already had (an import of a delta says both)
    volumes_needed: list[int] = field(default_factory=list)  # volumes holding parts this mirror still lacks

    def to_dict(self) -> dict:
        return {"bundle": str(self.bundle), "channel": self.channel, "version": self.version,
                "result": "nothing-new" if self.nothing_new else ("verified" if self.verified_only else "imported"),
                "blobs_read": self.blobs_read, "bytes_read": self.bytes_read, "targets": self.targets,
                "published": self.published, "images": self.images, "models": [f"{n}@{r}" for n, r in self.models],
                "signers": self.signers, "blocked": self.blocked, "pending": self.pending, "decisions": self.decisions,
                "files_new": self.files_new, "files_present": self.files_present,
                "volumes_needed": self.volumes_needed}


class _Discard:
    def write(self, data: bytes) -> None:
        pass


def _check_kinds(release: VerifiedRelease, bundle: Path) -> None:
    unknown = sorted({t.kind or "?" for t in release.targets} - KNOWN_KINDS)
    if unknown:
        raise BundleFormatError(f"{bundle}: carries target kinds this gapsync cannot publish ({', '.join(unknown)}); upgrade gapsync")
    try:  # every target's custom is its kind's record: nothing after this meets a missing or ill-typed field
        check_targets(release.targets)
    except BundleFormatError as e:
        raise BundleFormatError(f"{bundle}: {e}; refused before reading a blob") from None


def import_bundle(bundle: Path, mirror: Path, *, verify_only: bool = False, now: datetime | None = None,
                  options: ImportOptions | None = None) -> ImportResult:
    layout = MirrorLayout(mirror)
    layout.require()
    audit = AuditLog(layout.audit_path)
    audit.check()  # a link or FIFO at the log's name: refused before anything is done
    now = now or datetime.now(UTC)  # fixed once for every check of this run
    action = "bundle.verify" if verify_only else "import"
    try:
        try:
            with exclusive(layout.lock_path, f"mirror {mirror}", wait_seconds=0 if verify_only else 5):
                result = _run(bundle, layout, verify_only, now, options or ImportOptions())
        except OSError as e:  # _run turns its own into GapsyncErrors: this is the lock's (its pid on a full disk)
            raise FetchError(f"{mirror}: cannot start {'verifying' if verify_only else 'importing'} {bundle.name}: "
                             f"writing the lock file {layout.lock_path} failed ({e.strerror or e}); nothing was "
                             "published: free space and run again") from e
    except GapsyncError as e:
        result_word = "refused" if _is_verification(e) else ("blocked" if isinstance(e, PolicyBlockedError) else "error")
        try:
            audit.append(action, result_word, bundle=str(bundle), bundle_id=_quick_id(bundle), reason=str(e),
                         **({"decisions": e.decisions} if isinstance(e, PolicyBlockedError) else {}))
        except OSError as ae:  # a full disk: report the import's own error, and that the log missed it
            e.args = (f"{e} (and the audit log could not be written completely: {ae.strerror or ae})",)
        raise
    try:
        audit.append(action, "nothing-new" if result.nothing_new else "ok", bundle=str(bundle),
                     bundle_id=_quick_id(bundle), channel=result.channel, version=result.version,
                     blobs=result.blobs_read, bytes=result.bytes_read, published=result.published,
                     blocked=result.blocked)
    except OSError as ae:
        raise FetchError(f"{bundle}: imported channel {result.channel} version {result.version}, but the audit log "
                         f"{audit.path} could not record it ({ae.strerror or ae}): free space and check it with "
                         "gapsync audit verify") from ae
    return result


def _is_verification(e: Exception) -> bool:
    from gapsync.errors import VerificationError

    return isinstance(e, VerificationError)


def _quick_id(bundle: Path) -> str | None:
    """Identify the bundle file in the audit log without a second full read: sha256 over its size,
    first and last MiB (the signed content is identified by channel and version next to it)."""
    try:
        with fsutil.open_regular(bundle) as f:  # a FIFO or link: no id, and never a blocked open
            size = os.fstat(f.fileno()).st_size
            h = hashlib.sha256(str(size).encode())
            h.update(f.read(1 << 20))
            if size > 2 << 20:
                f.seek(size - (1 << 20))
                h.update(f.read())
        return h.hexdigest()
    except (OSError, fsutil.UnsafeFileError):
        return None


def _bundle_info(release: VerifiedRelease, path_of, available) -> BundleInfo:
    """The signed bundle.json of this release (kind, base, volumes), when it is at hand. Signed,
    but only these fields are acted on here: one of the wrong type is ignored (the bundle is then
    judged by what it carries), the rest of the document is not read."""
    t = next((t for t in release.targets if t.kind == "bundle-info"), None)
    if t is None or not available(t.blob.digest):
        return BundleInfo()
    try:
        info = json.loads(path_of(t.blob.digest).read_bytes())
    except (ValueError, RecursionError):
        return BundleInfo()
    if not isinstance(info, dict):
        return BundleInfo()
    kind, volumes, base = info.get("kind"), info.get("volumes"), info.get("base")
    if isinstance(base, dict) and (not isinstance(base.get("version"), int) or isinstance(base.get("version"), bool)):
        base = {k: v for k, v in base.items() if k != "version"}
    return BundleInfo(kind=kind if isinstance(kind, str) else None,
                      volumes=volumes if isinstance(volumes, int) and not isinstance(volumes, bool) else None,
                      base=base if isinstance(base, dict) else None)


def _signed_parts(release: VerifiedRelease, members: dict[str, bytes], bundle: Path) -> dict[str, list[SignedPart]]:
    """Format 2: the parts of every blob that spans volumes, from the (now verified) bundle.json
    target's ``custom.parts``; {} for format 1. A format this gapsync does not read is refused
    naming the format (gapsync/bundle/archive.py: bundle_format)."""
    fmt = bundle_format(json.loads(members["targets.json"])["signed"], str(bundle))
    info = next((t for t in release.targets if t.kind == "bundle-info"), None)
    rec = BundleInfoTarget.from_target(info) if info is not None else BundleInfoTarget()
    if fmt < 2:
        if rec.parts is not None:
            raise BundleFormatError(f"{bundle}: a parts table in a format {fmt} bundle (parts are format 2)")
        return {}
    sizes = {t.blob.digest: t.blob.size for t in release.targets}
    return parse_parts(rec.parts, sizes, rec.volumes, str(bundle))


def _check_part_member(member, parts: dict[str, list[SignedPart]], bundle: Path, volumes: set[int]) -> None:
    """A part member is one the signed parts table lists, with its signed length, and every part
    in one volume file belongs to the same volume; a blob the table splits is never whole."""
    plist = parts.get(member.digest)
    if not member.part:
        raise BundleFormatError(f"{bundle}: blob {member.digest} is carried whole, but the signed metadata "
                                "splits it into parts")
    if plist is None or member.part > len(plist):
        raise BundleFormatError(f"{bundle}: member {member.name} is not a part the signed metadata lists")
    sp = plist[member.part - 1]
    if member.size != sp.length:
        raise DigestMismatchError(f"{bundle}: member {member.name} is {member.size} bytes, the signed length of "
                                  f"that part is {sp.length}")
    volumes.add(sp.volume)
    if len(volumes) > 1:
        raise BundleFormatError(f"{bundle}: carries parts of volumes {', '.join(map(str, sorted(volumes)))}; "
                                "the signed metadata puts each volume's parts in one volume")


def _clear_done_parts(layout: MirrorLayout) -> None:
    """Staged parts of blobs the store has now (a run killed between publish and clean-up)."""
    store = PartStore(layout.parts_dir)
    for digest in list(store.digests()):
        if layout.blob_path(digest).is_file():
            store.remove(digest)


def _check_json_sizes(release: VerifiedRelease, bundle: Path) -> None:
    for t in release.targets:
        limit = MAX_JSON_TARGET.get(t.kind)
        if limit is not None and t.blob.size > limit:
            raise BundleFormatError(f"{bundle}: {t.path} ({t.kind}) is {t.blob.size} bytes, more than the "
                                    f"{limit} this gapsync reads; refused before reading it")


def _check_model_manifests(release: VerifiedRelease, path_of, available, bundle: Path) -> None:
    """A model manifest is signed JSON that later steps index without checks ({"files": [{"path",
    "sha256", "size"}]}): a signer's mistake or a stolen key must not turn it into a crash."""
    for t in release.targets:
        if t.kind not in ("model", "dataset") or not available(t.blob.digest):
            continue
        try:
            doc = json.loads(path_of(t.blob.digest).read_bytes())
            files = doc["files"]
            ok = isinstance(files, list) and all(
                isinstance(f, dict) and isinstance(f.get("path"), str) and isinstance(f.get("sha256"), str)
                and isinstance(f.get("size"), int) for f in files)
        except (ValueError, RecursionError, KeyError, TypeError) as e:
            raise BundleFormatError(f"{bundle}: model manifest {t.path} is not a manifest ({type(e).__name__})") from e
        if not ok:
            raise BundleFormatError(f"{bundle}: model manifest {t.path} lists files without a path, sha256 and size")
        try:  # the rules resolve applied at the DMZ: names the cache can hold, one tree (no `a` beside `a/b`)
            m = ModelTarget.from_target(t)
            check_model(m.name, m.revision, m.commit, [f["path"] for f in files])
        except BadName as e:
            raise BundleFormatError(f"{bundle}: model manifest {t.path}: {e}; refused before publishing") from None


def _scan(release: VerifiedRelease, candidates: list[Target], path_of, options: ImportOptions, now: datetime,
          result: ImportResult, bundle: Path) -> set[str]:
    """Scan again on this side, with the advisory database the bundle carries (or the local
    one), under this side's policy; returns the blocked artifact keys."""
    adv = next((t for t in release.targets if t.kind == "advisories"), None)
    advisories = load_advisories(path_of(adv.blob.digest) if adv else advisory_file(None))
    outcome = scan_subjects(build_subjects(candidates, path_of), load_policy(options.policy), advisories, now)
    result.decisions = outcome.decision_dicts()
    blocked = set(outcome.blocked())
    result.blocked = sorted(blocked)
    if blocked and not options.allow_partial:
        raise PolicyBlockedError(f"{bundle}: this side's policy blocks {len(blocked)} artifact(s): "
                                 + outcome.blocked_summary()
                                 + "; nothing was published", outcome.decision_dicts())
    return blocked


def _clear_stale_staging(layout: MirrorLayout) -> None:
    """Scratch space left by a run that was killed: we hold the mirror's lock, so no live run owns it."""
    staging = layout.staging_dir
    for d in staging.iterdir() if staging.is_dir() else []:
        shutil.rmtree(d, ignore_errors=True)


def _run(bundle: Path, layout: MirrorLayout, verify_only: bool, now: datetime, options: ImportOptions) -> ImportResult:
    handlers = [cls(layout) for cls in TARGET_CLASSES]
    if not verify_only:  # verify takes no lock wait and may run beside an import: it leaves others' scratch alone
        _clear_stale_staging(layout)
        _clear_done_parts(layout)
    scratch = layout.new_staging()
    try:
        return _run_in(bundle, layout, verify_only, now, options, handlers, scratch)
    except OSError as e:
        # publishing turns its own OSErrors into PublishError: this one came before, while
        # verifying or staging (a full disk, most often), and nothing was published
        what = f"{e.strerror or e}" + (f": {e.filename}" if e.filename else "")
        raise FetchError(f"{layout.root}: importing {bundle.name} failed before anything was published ({what}); "
                         "the mirror is unchanged: free space (or fix the file system) and run again") from e
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _run_in(bundle: Path, layout: MirrorLayout, verify_only: bool, now: datetime, options: ImportOptions,
            handlers: list, scratch: Path) -> ImportResult:
    with BundleReader(bundle) as reader:
        try:
            members = apply_approvals(bundle, reader.read_metadata())  # + BUNDLE.approvals.json, if any
            channel = claimed_channel(members, bundle)
            release = verify_release(layout, channel, members, scratch, bundle, now)
        except RecursionError as e:  # json.loads on "[[[[...": python-tuf and our own parsers
            raise BundleFormatError(f"{bundle}: metadata nested too deeply to parse ({e})") from e
        _check_kinds(release, bundle)
        _check_json_sizes(release, bundle)
        parts = _signed_parts(release, members, bundle)  # format 2: blobs that span volumes
        view = claims.published_layout(layout, channel)  # the channel's own namespace, if it was given one
        if view is not layout:
            handlers = [type(h)(view) for h in handlers]
        # a name another channel owns is refused before anything is staged (models' snapshots below)
        claims.check(view, channel, release.targets, None, bundle)
        for h in handlers:  # targets that keep per-channel views (pep503's target views) need the channel
            h.channel = channel
        groups = [(h, [t for t in release.targets if t.kind in h.kinds]) for h in handlers]
        for h, ts in groups:
            h.check(ts)
        result = ImportResult(bundle, channel, release.version, verified_only=verify_only,
                              targets=len(release.targets), signers=release.signers,
                              images=sorted(ref_name(t) for t in release.targets if t.kind == "oci-image"),
                              models=sorted((m.name, m.revision) for t in release.targets if t.kind == "model"
                                            for m in [ModelTarget.from_target(t)]))
        state = layout.state(channel)
        by_digest: dict[str, Target] = {t.blob.digest: t for t in release.targets}
        needed = {d for d, t in by_digest.items() if not layout.has_blob(d, t.blob.size)}
        if (not verify_only and release.version == state.version and not needed
                and all(h.is_published(t) for h, ts in groups for t in ts)):
            result.nothing_new = True
            return result
        # every member against the signed targets before a byte is read or space is asked
        # for: a bundle that lies about sizes is refused, not reported as needing terabytes
        part_volumes: set[int] = set()
        for member in reader.iter_blobs():
            target = by_digest.get(member.digest)
            if target is None:
                raise BundleFormatError(f"{bundle}: member {member.name} is not a target of version {release.version}")
            if member.part or member.digest in parts:
                _check_part_member(member, parts, bundle, part_volumes)
            elif member.size != target.blob.size:
                raise DigestMismatchError(f"{bundle}: blob {member.digest} ({target.path}) is {member.size} bytes, "
                                          f"signed length is {target.blob.size}")
        if not verify_only:  # what this bundle (or volume) carries and the mirror lacks
            carried = {m.digest for m in reader.iter_blobs() if not m.part}
            check_free_space(layout.meta, sum(by_digest[d].blob.size for d in needed & carried)
                             + sum(m.size for m in reader.iter_blobs() if m.part and m.digest in needed),
                             f"importing {bundle.name}")
        seen: set[str] = set()
        staging = fsutil.Dir(scratch, create=False)  # opened once; each blob created O_EXCL|O_NOFOLLOW in it
        store = PartStore(layout.parts_dir)
        staged_parts = 0
        assembled: list[str] = []
        for member in reader.iter_blobs():
            target = by_digest[member.digest]
            if member.part:  # a part: checked against its signed sha256, kept until the blob is whole
                sp = parts[member.digest][member.part - 1]
                what = f"{bundle}: part {member.part} of blob {member.digest} ({target.path})"
                others = [p for p in parts[member.digest] if p.index != member.part]
                if verify_only or member.digest not in needed or store.has(sp):
                    copy_verified(reader.chunks(member), _Discard(), what=what, sha256=sp.sha256, size=sp.length,
                                  overlap=False)
                elif store.complete(others):  # the last part: the whole blob is checked in the same pass
                    store.put_last(sp, target.blob.size, reader.chunks(member), what, scratch / member.digest, others)
                    seen.add(member.digest)
                    assembled.append(member.digest)
                    staged_parts += 1
                else:
                    store.put(sp, reader.chunks(member), what)
                    staged_parts += 1
                result.blobs_read += 1
                result.bytes_read += member.size
                continue
            seen.add(member.digest)
            # every blob carried is hashed, even one the mirror has: a damaged or tampered
            # bundle is reported, not silently half-used
            what = f"{bundle}: blob {member.digest} ({target.path})"
            small = member.size <= SMALL_BLOB  # verify keeps the small ones (manifests, bundle.json) to read them
            if (verify_only and not small) or (not verify_only and member.digest not in needed):
                copy_verified(reader.chunks(member), _Discard(), what=what, sha256=member.digest, size=target.blob.size,
                              overlap=False)
            else:
                with staging.create(member.digest) as f:  # written to disk while the bundle is still read
                    copy_verified(reader.chunks(member), WriteBehind(f, 0), what=what, sha256=member.digest,
                                  size=target.blob.size)
                    f.flush()
                    os.fsync(f.fileno())
                faults.point("import.staged-blob")
            result.blobs_read += 1
            result.bytes_read += member.size
        staging.close()
        for digest, plist in sorted(parts.items()):  # blobs whose last part came before (a re-run): checked whole
            if digest in needed and digest not in seen and not verify_only and store.complete(plist):
                store.assemble(digest, by_digest[digest].blob.size, scratch / digest,
                               f"{bundle}: blob {digest} ({by_digest[digest].path}) assembled from its parts")
                seen.add(digest)
                assembled.append(digest)
        result.volumes_needed = sorted({p.volume for d, plist in parts.items() if d in needed and d not in seen
                                        for p in store.missing(plist)})
        stored = {d for d in seen if (scratch / d).is_file()}  # staged in scratch by this run

        def path_of(digest: str) -> Path:
            return scratch / digest if digest in stored else layout.blob_path(digest)

        def available(digest: str) -> bool:
            return digest in stored or (verify_only and digest in seen) or layout.blob_path(digest).is_file()

        info = _bundle_info(release, path_of, available)
        _check_model_manifests(release, path_of, available, bundle)
        base = info.base or {}
        if info.kind == "delta" and base.get("version") is not None and state.version < int(base["version"]):
            # refused before anything is published, volume or not: a half-imported delta would
            # move the channel past the versions that carry what it leaves out
            raise BundleFormatError(
                f"{bundle}: a delta made for a mirror that has version {base['version']} of channel {channel} "
                f"({base.get('source')}); this mirror has version {state.version}: import the bundles in between, "
                "or ask for a full bundle")
        missing = sorted(needed - seen)
        if missing and (info.volumes or 1) <= 1:
            sample = ", ".join(by_digest[d].path for d in missing[:3]) + (", …" if len(missing) > 3 else "")
            if info.kind == "delta":
                raise BundleFormatError(
                    f"{bundle}: a delta made for a mirror that has version {base.get('version')} of channel {channel} "
                    f"({base.get('source')}); this mirror has version {state.version} and lacks {len(missing)} blob(s) "
                    f"({sample}): import the bundles in between, or ask for a full bundle")
            raise BundleFormatError(f"{bundle}: lacks {len(missing)} blob(s) that this mirror does not have ({sample})")
    waiting = waiting_artifacts(release.targets, path_of, available)
    result.pending = sorted(waiting)
    if verify_only:
        return result
    if release.version == state.version and not stored and not staged_parts:
        result.nothing_new = True  # a volume (or a repeat) that brings nothing this mirror lacks
        return result
    candidates = allowed_targets(release.targets, waiting)
    blocked = _scan(release, candidates, path_of, options, now, result, bundle)
    publish = allowed_targets(candidates, blocked)
    # verified blobs go into the store unless only blocked artifacts use them: those of
    # artifacts still waiting for another volume are kept for when it comes
    keep = {t.blob.digest for t in allowed_targets(release.targets, blocked)}
    for t in allowed_targets(release.targets, blocked):
        if t.kind in ("model", "dataset") and available(t.blob.digest):  # a model's files are its model-blob targets
            keep.update(f["sha256"] for f in json.loads(path_of(t.blob.digest).read_bytes())["files"])
    needed = stored & keep
    groups = [(h, [t for t in publish if t.kind in h.kinds]) for h in handlers]
    shown = [t for h, ts in groups for t in ts if t.kind in SHOWN_KINDS]
    result.files_present = sum(1 for h, ts in groups for t in ts if t.kind in SHOWN_KINDS and h.is_published(t))
    result.files_new = len(shown) - result.files_present

    # with the models' snapshots (read now: publishing moves the staged manifests into the store)
    manifests = {t.blob.digest: json.loads(path_of(t.blob.digest).read_bytes()) for t in publish
                 if t.kind in ("model", "dataset")}
    claims.check(view, channel, publish, lambda t: manifests[t.blob.digest], bundle)
    # -- publish: blobs into the store, then the index, then the trust and channel state.
    # Files go in before the pages that name them, so a reader never follows a dangling
    # link; the channel advances last. Every write goes through the journal: a failure undoes
    # them all, the last first, and leaves the mirror as it was (a SIGKILL cannot undo: the
    # re-run then redoes the publish, which is idempotent).
    journal: PublishJournal | None = None
    try:
        journal = PublishJournal(scratch / "aside")
        for digest in sorted(needed):
            os.chmod(scratch / digest, 0o444)
            journal.move_in(scratch / digest, layout.blob_path(digest))
            faults.point("import.stored-blob")
        for h, ts in groups:
            result.published += h.publish(ts, layout.blob_path, journal)
            faults.point(f"import.published.{type(h).__name__}")
        claims.record(view, channel, publish, lambda t: manifests[t.blob.digest], journal)
        layout.commit_tuf(channel, release.tuf_dir, release.version, journal)
        faults.point("import.committed-trust")
        state.version = release.version
        state.last_import = now.isoformat()
        state.bundles = [*(state.bundles or []), {"version": release.version, "bundle": bundle.name,
                                                  "imported": now.isoformat(timespec="seconds")}]
        layout.write_state(channel, state, journal)
    except BaseException as e:
        error = _undo_publish(e, journal, layout, bundle, channel, release.version)
        if error is not None:
            raise error from e
        raise
    journal.commit()
    for digest in assembled:  # in the store now: its parts are not needed any more
        store.remove(digest)
    return result


def _undo_publish(e: BaseException, journal: PublishJournal | None, layout: MirrorLayout, bundle: Path,
                  channel: str, version: int) -> PublishError | None:
    """Roll the failed publish back. An OSError (a full disk, most often) becomes the returned
    PublishError, one line saying whether the mirror is as it was; any other error is raised as
    it is (None), its message extended when the undo failed."""
    failed = journal.rollback() if journal is not None else []
    if failed:  # the mirror is consistent (the channel did not advance) but not as it was
        undo = (f"and undoing it stopped at {failed[0]}: the mirror holds part of the new version, consistent "
                "(no page names a missing file), the channel did not advance")
        try:
            AuditLog(layout.audit_path).append("import.rollback", "error", bundle=str(bundle), channel=channel,
                                               version=version, reason=str(e), failed=failed)
        except OSError:
            undo += " (the audit log could not record the failed undo)"
    else:
        undo = "and was undone: the mirror is as it was and the channel did not advance"
    if isinstance(e, OSError):
        return PublishError(f"{layout.root}: publishing version {version} failed ({e.strerror or e}) {undo}; "
                            "free space (or fix the file system) and run the import again" + (" to finish" if failed else ""))
    if failed and isinstance(e, GapsyncError):
        e.args = (f"{e} ({undo}: run the import again to finish)",)
    return None
