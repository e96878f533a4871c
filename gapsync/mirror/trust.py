"""Pinning a channel's first root on the air-gapped side, and TUF verification of a bundle's
metadata with python-tuf's ``ngclient.Updater``, whose fetcher reads from the bundle.

The Updater runs in a scratch copy of the channel's client state; the copy replaces the real
state only after the whole import succeeded, so a bundle that fails later (a bad blob) leaves
the mirror's trust state exactly as it was.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from tuf.api import exceptions as tuf_exc
from tuf.api.metadata import Metadata, Root, Targets
from tuf.ngclient import FetcherInterface, Updater, UpdaterConfig

from gapsync import fsutil
from gapsync.audit import AuditLog
from gapsync.bundle import approvals as approve
from gapsync.bundle.archive import METADATA_LIMITS
from gapsync.bundle.tuf import channel_of, duplicate_key_material, fingerprint, signed_bytes, to_bytes
from gapsync.errors import BundleFormatError, InputError, TrustError
from gapsync.fsutil import write_atomic
from gapsync.mirror.claims import set_namespace
from gapsync.mirror.layout import MirrorLayout
from gapsync.model import BlobRef, Target

BASE_URL = "bundle:///metadata/"


def _load_root(data: bytes, what: str) -> Metadata[Root]:
    try:
        md = Metadata[Root].from_bytes(data)
    except Exception as e:
        raise TrustError(f"{what}: not a TUF root ({e})") from e
    dups = duplicate_key_material(md.signed)
    if dups:
        raise TrustError(f"{what}: root lists the same key material under more than one key id ({', '.join(d[:12] for d in dups)}); "
                         "a threshold could be met by one key")
    return md


def pin_root(layout: MirrorLayout, root_file: Path, namespace: str | None = None) -> tuple[str, str]:
    """Trust-on-first-use, made deliberate: store root v1 for its channel (and, with
    ``namespace``, publish that channel into its own trees: claims.set_namespace); return
    (channel, fingerprint). Recorded in the mirror's audit log (``trust.pin``); pinning the same
    root again changes nothing and is recorded again."""
    channel, fp = _pin(layout, root_file)
    if namespace is not None:
        set_namespace(layout, channel, namespace)
    AuditLog(layout.audit_path).append("trust.pin", "ok", channel=channel, root=str(root_file), fingerprint=fp,
                                       **({"namespace": namespace} if namespace else {}))
    return channel, fp


def _pin(layout: MirrorLayout, root_file: Path) -> tuple[str, str]:
    try:
        data = fsutil.read_regular(root_file, METADATA_LIMITS["root"])  # from the medium: no link, no FIFO
    except OSError as e:
        raise InputError(f"{root_file}: cannot read ({e.strerror})") from e
    md = _load_root(data, str(root_file))
    try:
        md.signed.verify_delegate(Root.type, _canonical(md), md.signatures)
    except tuf_exc.UnsignedMetadataError as e:
        raise TrustError(f"{root_file}: root is not signed by its own threshold ({e})") from e
    channel = channel_of(md)
    if not channel:
        raise TrustError(f"{root_file}: not a gapsync channel root (no x-gapsync channel field)")
    if md.signed.version != 1:
        raise InputError(f"{root_file}: pin the channel's first root (version 1), not version {md.signed.version}")
    layout.ensure()
    cdir = layout.channel_dir(channel)
    pinned = layout.pinned_path(channel)
    fp = fingerprint(data)
    if pinned.exists():
        old = json.loads(fsutil.read_regular(pinned, 1 << 20))
        if old.get("fingerprint") == fp:
            return channel, fp
        raise InputError(f"{layout.root}: channel {channel!r} is already pinned to another root ({old.get('fingerprint')})")
    staging = layout.new_staging()
    try:
        tuf = staging / "tuf"
        fsutil.write_new(tuf / "root_history" / "1.root.json", data)
        fsutil.symlink_atomic("root_history/1.root.json", tuf / "root.json")
        cdir.mkdir(parents=True, exist_ok=True)
        layout.commit_tuf(channel, tuf, 1)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    write_atomic(pinned, json.dumps(
        {"channel": channel, "fingerprint": fp, "pinned_at": datetime.now(UTC).isoformat(timespec="seconds")},
        indent=1).encode())
    return channel, fp


def _canonical(md: Metadata) -> bytes:
    from tuf.api.serialization.json import CanonicalJSONSerializer

    return CanonicalJSONSerializer().serialize(md.signed)


class BundleMetadataFetcher(FetcherInterface):
    """Serves the bundle's ``metadata/*`` members to the Updater; anything absent is a 404,
    which is how the Updater learns that the root chain ends."""

    def __init__(self, members: dict[str, bytes]):
        self.members = members
        self.fetched: list[str] = []  # in order: tells which role a refusal was about

    def _fetch(self, url: str) -> Iterator[bytes]:
        if not url.startswith(BASE_URL):
            raise tuf_exc.DownloadHTTPError(f"{url}: outside the bundle", 404)
        name = url[len(BASE_URL):]
        self.fetched.append(name)
        if name not in self.members:
            raise tuf_exc.DownloadHTTPError(f"metadata/{name} is not in the bundle", 404)
        return iter([self.members[name]])


@dataclass
class VerifiedRelease:
    channel: str
    version: int
    targets: list[Target]
    tuf_dir: Path  # scratch client state to commit on success
    signers: list[str]
    expires: datetime


def claimed_channel(members: dict[str, bytes], bundle: Path) -> str:
    """The channel the (not yet verified) targets metadata claims: only used to pick the pinned root."""
    raw = members.get("targets.json")
    if raw is None:
        raise BundleFormatError(f"{bundle}: no metadata/targets.json")
    try:
        signed = json.loads(raw)["signed"]
        channel = signed["x-gapsync"]["channel"]
    except RecursionError as e:
        raise BundleFormatError(f"{bundle}: metadata/targets.json is nested too deeply") from e
    except (ValueError, KeyError, TypeError) as e:
        raise BundleFormatError(f"{bundle}: metadata/targets.json is not gapsync metadata") from e
    if not isinstance(channel, str):
        raise BundleFormatError(f"{bundle}: metadata/targets.json names no channel")
    return channel


def apply_approvals(bundle: Path, members: dict[str, bytes]) -> dict[str, bytes]:
    """Merge the signatures of ``BUNDLE.approvals.json`` (``bundle approve``), if there is one,
    into the bundle's ``targets.json`` before TUF sees it; keys that signed in the bundle keep
    their own signature. A side file for other targets metadata, or with a signature that does
    not verify against a targets key of the bundle's newest root, is refused (TrustError). TUF
    then judges the merged document as usual: thresholds, and the root chain it trusts."""
    appr = approve.read_approvals(bundle)
    if appr is None:
        return members
    tmd, root = approve.bundle_trust(members, bundle)
    approve.check_accepts_approvals(members, bundle)
    approve.check_approvals(appr, tmd, root.signed, bundle)
    if not approve.merge(tmd, appr):
        return members
    merged = to_bytes(tmd)
    if len(merged) > METADATA_LIMITS["targets"]:
        raise BundleFormatError(f"{bundle}: targets metadata with its approvals exceeds {METADATA_LIMITS['targets']} bytes")
    return {**members, "targets.json": merged}


def _targets_threshold_message(bundle: Path, tuf: Path, members: dict[str, bytes]) -> str | None:
    """'needs 2 signatures of the targets role, has 1' when the refusal was about targets."""
    try:
        root = Metadata[Root].from_file(str(tuf / "root.json")).signed  # the newest root TUF trusted
        tmd = Metadata[Targets].from_bytes(members["targets.json"])
        result = root.get_verification_result(Targets.type, signed_bytes(tmd), tmd.signatures)
    except Exception:
        return None
    need, has = result.threshold, len(result.signed)
    what = f"{bundle}: targets v{tmd.signed.version} needs {need} signature(s) of the targets role, has {has}"
    if has == 0:
        return f"{what}: signed by no targets key of root v{root.version} (threshold not met)"
    side = approve.side_file(bundle).name
    return (f"{what} (threshold not met): approve it with gapsync bundle approve "
            f"(the approval travels as {side} next to the bundle)")


def verify_release(layout: MirrorLayout, channel: str, members: dict[str, bytes], scratch: Path,
                   bundle: Path, now: datetime) -> VerifiedRelease:
    try:
        pinned = layout.pinned(channel)
    except TrustError as e:
        raise TrustError(f"{bundle}: {e}") from e
    state = layout.state(channel)
    if state.last_import and now < datetime.fromisoformat(state.last_import):
        raise TrustError(f"{layout.root}: this machine's clock ({now:%Y-%m-%dT%H:%M:%SZ}) is before the last import "
                         f"({state.last_import}); fix the clock before importing")
    for name, data in members.items():
        if name.endswith(".root.json"):
            _load_root(data, f"{bundle}: metadata/{name}")
    tuf = scratch / "tuf"
    fsutil.copy_tree(layout.tuf_dir(channel), tuf)
    for name, data in members.items():  # roots we already trust must be carried unchanged
        known = tuf / "root_history" / name
        if name.endswith(".root.json") and known.is_file() and known.read_bytes() != data:
            raise TrustError(f"{bundle}: metadata/{name} differs from the trusted root of that version")
    config = UpdaterConfig(max_root_rotations=64, root_max_length=METADATA_LIMITS["root"],
                           timestamp_max_length=METADATA_LIMITS["timestamp"],
                           snapshot_max_length=METADATA_LIMITS["snapshot"],
                           targets_max_length=METADATA_LIMITS["targets"])
    fetcher = BundleMetadataFetcher(members)
    try:
        updater = Updater(str(tuf), BASE_URL, fetcher=fetcher, config=config, bootstrap=None)
        # python-tuf takes "now" when the trusted set is made; check against our fixed instant too
        updater.refresh()
    except tuf_exc.ExpiredMetadataError as e:
        raise TrustError(f"{bundle}: expired metadata ({e})") from e
    except tuf_exc.BadVersionNumberError as e:
        raise TrustError(f"{bundle}: older or replayed bundle ({e})") from e
    except tuf_exc.UnsignedMetadataError as e:
        if fetcher.fetched[-1:] == ["targets.json"] and (msg := _targets_threshold_message(bundle, tuf, members)):
            raise TrustError(msg) from e
        last = fetcher.fetched[-1] if fetcher.fetched else ""
        if last.endswith(".root.json"):
            raise TrustError(f"{bundle}: metadata/{last} does not meet the threshold of the root before it and of itself "
                             f"({e}); a rotation must be signed by both the old and the new root keys") from e
        raise TrustError(f"{bundle}: signatures do not meet the pinned keys' threshold ({e})") from e
    except tuf_exc.RepositoryError as e:
        raise TrustError(f"{bundle}: metadata refused ({type(e).__name__}: {e})") from e
    except tuf_exc.DownloadError as e:
        raise BundleFormatError(f"{bundle}: missing or oversized metadata ({e})") from e
    except (ValueError, KeyError, TypeError) as e:
        raise TrustError(f"{bundle}: malformed metadata ({e})") from e
    root = Metadata[Root].from_file(str(tuf / "root.json"))
    _load_root((tuf / "root.json").read_bytes(), f"{bundle}: trusted root")
    tmd = Metadata[Targets].from_file(str(tuf / "targets.json"))
    for role_name, md in (("root", root), ("targets", tmd),
                          ("snapshot", Metadata.from_file(str(tuf / "snapshot.json"))),
                          ("timestamp", Metadata.from_file(str(tuf / "timestamp.json")))):
        if channel_of(md) != channel or pinned.get("channel") != channel:
            raise TrustError(f"{bundle}: {role_name} metadata belongs to channel {channel_of(md)!r}, not {channel!r}")
    if tmd.signed.is_expired(now):
        raise TrustError(f"{bundle}: targets metadata expired on {tmd.signed.expires:%Y-%m-%d %H:%M}Z")
    targets = []
    for path, tf in sorted(tmd.signed.targets.items()):
        sha = tf.hashes.get("sha256")
        if not sha:
            raise TrustError(f"{bundle}: target {path!r} has no sha256")
        try:
            blob = BlobRef(sha, tf.length)
        except ValueError as e:
            raise TrustError(f"{bundle}: target {path!r}: {e}") from e
        targets.append(Target(path, blob, tf.custom if isinstance(tf.custom, dict) else {}))
    return VerifiedRelease(channel, tmd.signed.version, targets, tuf, sorted(s for s in tmd.signatures),
                           tmd.signed.expires)
