"""The connected side's TUF repository for one channel, through python-tuf's Metadata API.

State on disk (``STATE/<channel>/``): the root chain as ``N.root.json``, the last signed
``targets.json``, ``snapshot.json`` and ``timestamp.json``, and ``history.jsonl`` (one line per
bundle shipped); ``STATE/audit.log`` is the connected side's audit log (``state_audit_log``), to
which ``ChannelRepo.init`` (and ``rotate``, ``create_bundle``) append their own entries, so a
library caller leaves the same trail as the command line. Each bundle advances targets, snapshot and timestamp together to version N, so
"bundle N" and "metadata version N" are the same number on both sides.

Every signed document carries ``x-gapsync: {channel, format}`` among its fields, so that a bundle
of one channel can never be taken for another's even when a site uses one key for both.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tuf.api.metadata import (
    SPECIFICATION_VERSION,
    Metadata,
    MetaFile,
    Root,
    Snapshot,
    TargetFile,
    Targets,
    Timestamp,
)

from gapsync import fsutil
from gapsync.audit import AuditLog
from gapsync.bundle.keys import SigningKey
from gapsync.bundle.tuf import (
    FORMAT,
    duplicate_key_material,
    ext,
    fingerprint,
    signed_bytes,
    to_bytes,
)
from gapsync.errors import InputError, TrustError
from gapsync.fsutil import write_atomic
from gapsync.model import Target

STATE_FILE_LIMIT = 64 << 20  # a channel state file (root, last targets...) is read whole
AUDIT_LOG = "audit.log"  # STATE/audit.log


def state_audit_log(state: Path) -> AuditLog:
    """The connected side's hash-chained audit log, ``STATE/audit.log`` (``gapsync audit verify --state``)."""
    return AuditLog(state / AUDIT_LOG)


def _state_metadata(path: Path, data: bytes) -> Metadata:
    """The TUF metadata in the channel state file ``path`` (read with fsutil.read_regular: a
    link or FIFO there is refused, never followed), or one line naming the file when it does not
    parse (was 'internal error: DeserializationError')."""
    try:
        return Metadata.from_bytes(data)
    except Exception as e:  # tuf raises DeserializationError, wrapping whatever json/ValueError said
        raise InputError(f"{path}: not TUF metadata gapsync wrote ({type(e).__name__}: {str(e)[:120]}); "
                         "restore the channel state from its backup") from None

TOP_ROLES = ("root", "targets", "snapshot", "timestamp")
# ``bundle create --unapproved``: sign targets with fewer keys than its threshold (at least one),
# so that the other holders approve the bundle later (``bundle approve``). Scoped by
# ``unapproved_signing()`` around one create; off everywhere else.
_UNAPPROVED: contextvars.ContextVar[bool] = contextvars.ContextVar("gapsync_unapproved", default=False)


@contextlib.contextmanager
def unapproved_signing() -> Iterator[None]:
    token = _UNAPPROVED.set(True)
    try:
        yield
    finally:
        _UNAPPROVED.reset(token)


@dataclass(frozen=True)
class NewChannel:
    """What ``ChannelRepo.init`` made: root v1 at ``path``, to pin on the air side (two people
    compare ``fingerprint`` with the one ``gapsync trust pin`` prints)."""

    channel: str
    path: Path
    fingerprint: str
    keyids: list[str]
    threshold: int


@dataclass
class Release:
    """One signed version of the channel, ready to be written into a bundle."""

    version: int
    channel: str
    members: dict[str, bytes]  # metadata member name (e.g. "2.root.json", "targets.json") -> bytes
    targets_md: Metadata


class ChannelRepo:
    def __init__(self, state: Path, channel: str):
        self.channel = channel
        self.dir = state / channel
        if not (self.dir / "1.root.json").is_file():
            raise InputError(f"{self.dir}: channel {channel!r} is not initialised (run gapsync channel init)")

    # -- set-up ---------------------------------------------------------------------------
    @staticmethod
    def init(state: Path, channel: str, keys: list[SigningKey], threshold: int,
             online: SigningKey | None = None, expires: timedelta = timedelta(days=365)) -> NewChannel:
        """Create root v1: root and targets held by ``keys`` with ``threshold``; snapshot and
        timestamp by the online key (the first key unless given). Recorded in the state's audit
        log (``channel.init``)."""
        from gapsync.bundler.spec import NAME_RE

        if not NAME_RE.match(channel):
            raise InputError(f"channel name {channel!r}: use letters, digits, '.', '_' or '-'")
        cdir = state / channel
        if (cdir / "1.root.json").exists():
            raise InputError(f"{cdir}: channel {channel!r} already exists")
        unique = list({k.public.raw: k for k in keys}.values())
        if not unique:
            raise InputError("channel init: give at least one --key")
        if not 1 <= threshold <= len(unique):
            raise InputError(f"--threshold {threshold}: must be between 1 and the number of distinct keys ({len(unique)})")
        online = online or unique[0]
        root = Root(expires=datetime.now(UTC).replace(microsecond=0) + expires,
                    consistent_snapshot=False, unrecognized_fields=ext(channel))
        for k in unique:
            root.add_key(k.public.tuf_key(), Root.type)
            root.add_key(k.public.tuf_key(), Targets.type)
        root.add_key(online.public.tuf_key(), Snapshot.type)
        root.add_key(online.public.tuf_key(), Timestamp.type)
        root.roles[Root.type].threshold = threshold
        root.roles[Targets.type].threshold = threshold
        md = Metadata(root)
        for k in unique:
            md.sign(k.tuf_signer(), append=True)
        root.verify_delegate(Root.type, signed_bytes(md), md.signatures)
        cdir.mkdir(parents=True, exist_ok=True)
        path = cdir / "1.root.json"
        data = to_bytes(md)
        write_atomic(path, data)
        made = NewChannel(channel, path, fingerprint(data), [k.public.tuf_key().keyid for k in keys], threshold)
        state_audit_log(state).append("channel.init", "ok", channel=channel, root=str(path), fingerprint=made.fingerprint,
                                      keys=made.keyids, threshold=threshold)
        return made

    # -- reading --------------------------------------------------------------------------
    def root_chain(self) -> list[tuple[int, bytes]]:
        chain = []
        for p in self.dir.glob("*.root.json"):
            m = re.match(r"^(\d+)\.root\.json$", p.name)
            if m:
                chain.append((int(m.group(1)), fsutil.read_regular(p, STATE_FILE_LIMIT)))
        chain.sort()
        if [v for v, _ in chain] != list(range(1, len(chain) + 1)):
            raise InputError(f"{self.dir}: root chain has a gap: {[v for v, _ in chain]}")
        return chain

    def root(self) -> Metadata[Root]:
        version, data = self.root_chain()[-1]
        return _state_metadata(self.dir / f"{version}.root.json", data)

    def add_root(self, md: Metadata[Root]) -> Path:
        """Write the next root of the chain (``channel rotate``); the caller checked its signatures."""
        version = len(self.root_chain()) + 1
        if md.signed.version != version:
            raise InputError(f"{self.dir}: the next root is version {version}, not {md.signed.version}")
        path = self.dir / f"{version}.root.json"
        if path.exists():
            raise InputError(f"{path}: already exists")
        write_atomic(path, to_bytes(md))
        return path

    def _last(self, role: str) -> Metadata | None:
        p = self.dir / f"{role}.json"
        try:
            data = fsutil.read_regular(p, STATE_FILE_LIMIT)
        except FileNotFoundError:
            return None
        return _state_metadata(p, data)

    def last_targets(self) -> Metadata[Targets] | None:
        return self._last(Targets.type)

    def next_version(self) -> int:
        versions = [md.signed.version for r in ("targets", "snapshot", "timestamp") if (md := self._last(r))]
        return max(versions, default=0) + 1

    # -- signing --------------------------------------------------------------------------
    def _sign(self, md: Metadata, role: str, root: Root, keys: list[SigningKey], partial: bool = False) -> None:
        allowed = set(root.roles[role].keyids)
        for k in keys:
            if k.public.tuf_key().keyid in allowed and k.public.tuf_key().keyid not in md.signatures:
                md.sign(k.tuf_signer(), append=True)
        result = root.get_verification_result(role, signed_bytes(md), md.signatures)
        if result.verified or (partial and result.signed):
            return
        need = root.roles[role].threshold
        if partial:
            raise InputError(
                f"channel {self.channel!r}: --unapproved still needs one signature of the {role} role "
                f"and no --key is one of its keys")
        hint = (" (or give --unapproved to sign with fewer and have the others approve it with "
                "gapsync bundle approve)" if role == Targets.type else "")
        raise InputError(
            f"channel {self.channel!r}: the {role} role needs {need} signature(s) from its keys "
            f"and the --key options give {len(result.signed)}{hint}")

    def sign_release(self, targets: list[Target], keys: list[SigningKey], expires: timedelta,
                     now: datetime | None = None, *, unapproved: bool | None = None, fmt: int = FORMAT) -> Release:
        """Sign targets, snapshot and timestamp version N. ``unapproved`` (default: inside
        ``unapproved_signing()``) lets targets carry fewer signatures than its threshold."""
        unapproved = _UNAPPROVED.get() if unapproved is None else unapproved
        now = (now or datetime.now(UTC)).replace(microsecond=0)
        root_md = self.root()
        root = root_md.signed
        if root.is_expired(now):
            raise TrustError(f"channel {self.channel!r}: root v{root.version} expired on {root.expires:%Y-%m-%d}; rotate it")
        if duplicate_key_material(root):
            raise TrustError(f"channel {self.channel!r}: root v{root.version} lists the same key under two key ids")
        version = self.next_version()
        expiry = now + expires
        tmd = Metadata(Targets(version=version, expires=expiry, unrecognized_fields=ext(self.channel, fmt)))
        for t in targets:
            tmd.signed.targets[t.path] = TargetFile(
                length=t.blob.size, hashes={"sha256": t.blob.digest}, path=t.path,
                unrecognized_fields={"custom": t.custom})
        self._sign(tmd, Targets.type, root, keys, partial=unapproved)
        targets_bytes = to_bytes(tmd)
        smd = Metadata(Snapshot(version=version, expires=expiry, unrecognized_fields=ext(self.channel)))
        # Snapshot pins targets.json by VERSION ONLY (TUF makes length and hashes optional in
        # snapshot's meta). Approvals (the two-person rule) add signatures to targets.json after
        # the bundle is made, travelling in a side file; a signature changes the file's bytes but
        # not the signed part. With hashes here, an approved targets.json would no longer match
        # snapshot and TUF would refuse it. Version-only keeps rollback and mix-and-match
        # protection (a different targets.json of the same version needs the targets threshold,
        # i.e. the very keys whose signatures make it valid), and the Updater still bounds the
        # download by targets_max_length. Timestamp keeps pinning snapshot with version, length
        # and sha256: nothing is ever added to snapshot after signing.
        smd.signed.meta["targets.json"] = MetaFile(version=version)
        self._sign(smd, Snapshot.type, root, keys)
        snapshot_bytes = to_bytes(smd)
        tsmd = Metadata(Timestamp(version=version, expires=expiry, unrecognized_fields=ext(self.channel)))
        tsmd.signed.snapshot_meta = _metafile(version, snapshot_bytes)
        self._sign(tsmd, Timestamp.type, root, keys)
        members = {f"{v}.root.json": data for v, data in self.root_chain()}
        members["timestamp.json"] = to_bytes(tsmd)
        members["snapshot.json"] = snapshot_bytes
        members["targets.json"] = targets_bytes
        return Release(version=version, channel=self.channel, members=members, targets_md=tmd)

    def commit(self, release: Release, history: dict) -> None:
        """Record that ``release`` shipped; only after its bundle file is complete on disk."""
        for role in ("targets", "snapshot", "timestamp"):
            write_atomic(self.dir / f"{role}.json", release.members[f"{role}.json"])
        with fsutil.open_append(self.dir / "history.jsonl") as f:
            f.write((json.dumps(history, sort_keys=True) + "\n").encode())
            f.flush()
            os.fsync(f.fileno())


def _metafile(version: int, data: bytes) -> MetaFile:
    return MetaFile(version=version, length=len(data), hashes={"sha256": hashlib.sha256(data).hexdigest()})


__all__ = ["SPECIFICATION_VERSION", "ChannelRepo", "NewChannel", "Release", "state_audit_log", "unapproved_signing"]
