"""``bundle approve``: the two-person rule without rewriting the bundle.

An approver signs the bundle's targets metadata (the canonical bytes of its ``signed`` part, as
python-tuf's ``Metadata.sign`` does) with a key of the targets role, and the signature travels in
a small side file next to the bundle, ``BUNDLE.approvals.json`` (one for all the volumes of a bundle); the bundle file, and so its
``.minisig``, stay as they are. Metadata is self-authenticating: the importer merges these
signatures into ``targets.json`` before TUF runs, and TUF counts them towards the targets
threshold like any other. (Snapshot pins targets.json by version only, so that the added
signatures do not break its check: see ``ChannelRepo.sign_release``.)

The side file (JSON, ``format`` 1)::

    {"type": "gapsync-approvals", "format": 1, "channel": "prod", "targets_version": 7,
     "signed_sha256": "<sha256 of the canonical signed bytes of targets.json>",
     "signatures": [{"keyid": "<64 hex>", "sig": "<hex>"}]}

A side file approves exactly one targets document: another version, another bundle or an edited
file has another ``signed_sha256`` and is refused, as is a signature that does not verify.
"""

from __future__ import annotations

import fcntl
import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from securesystemslib.exceptions import UnverifiedSignatureError
from tuf.api.metadata import Metadata, Root, Signature, Targets

from gapsync import fsutil
from gapsync.bundle.archive import SUFFIX as BUNDLE_SUFFIX
from gapsync.bundle.archive import BundleReader
from gapsync.bundle.keys import SigningKey
from gapsync.bundle.tuf import channel_of, duplicate_key_material, signed_bytes, signed_digest
from gapsync.errors import BundleFormatError, InputError, TrustError
from gapsync.fsutil import write_atomic

SUFFIX = ".approvals.json"
KIND = "gapsync-approvals"
FORMAT = 1
MAX_SIDE_FILE = 1 << 20
MAX_SIGNATURES = 256
_HEX64 = re.compile(r"[0-9a-f]{64}")  # fullmatch only
_HEX = re.compile(r"[0-9a-f]{2,1024}")


def side_file(bundle: Path) -> Path:
    """``BUNDLE.approvals.json``; the volumes of one bundle (``<stem>.vNNofMM.gapsync``) carry the
    same targets metadata and share one side file, ``<stem>.gapsync.approvals.json``."""
    from gapsync.bundle.volumes import VOLUME_RE

    m = VOLUME_RE.fullmatch(bundle.name)
    return bundle.with_name((f"{m.group('stem')}{BUNDLE_SUFFIX}" if m else bundle.name) + SUFFIX)


@dataclass
class Approvals:
    channel: str | None
    version: int
    signed_sha256: str
    signatures: dict[str, str] = field(default_factory=dict)  # keyid -> signature (hex)

    def to_bytes(self) -> bytes:
        doc = {"type": KIND, "format": FORMAT, "channel": self.channel, "targets_version": self.version,
               "signed_sha256": self.signed_sha256,
               "signatures": [{"keyid": k, "sig": v} for k, v in sorted(self.signatures.items())]}
        return (json.dumps(doc, indent=1, sort_keys=True) + "\n").encode()


def parse_approvals(data: bytes, where: str) -> Approvals:
    """Strict: anything unexpected is a reason to refuse the file (exit 3)."""
    def bad(reason: str) -> TrustError:
        return TrustError(f"{where}: not a valid approvals file ({reason})")

    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise bad(f"not JSON: {e}") from e
    except RecursionError:  # "[[[[...": was 'internal error' at `bundle approve` (import caught it later)
        raise bad("nested too deeply to parse") from None
    if not isinstance(doc, dict) or doc.get("type") != KIND:
        raise bad(f"no \"type\": \"{KIND}\"")
    if doc.get("format") != FORMAT:
        raise bad(f"format {doc.get('format')!r}, this gapsync reads format {FORMAT}")
    version, digest, sigs = doc.get("targets_version"), doc.get("signed_sha256"), doc.get("signatures")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise bad("targets_version is not a positive integer")
    if not isinstance(digest, str) or not _HEX64.fullmatch(digest):
        raise bad("signed_sha256 is not 64 lowercase hex digits")
    if not isinstance(sigs, list) or len(sigs) > MAX_SIGNATURES:
        raise bad(f"signatures is not a list of at most {MAX_SIGNATURES}")
    channel = doc.get("channel")
    out = Approvals(channel if isinstance(channel, str) else None, version, digest)
    for s in sigs:
        if not isinstance(s, dict) or set(s) != {"keyid", "sig"}:
            raise bad("a signature is not {keyid, sig}")
        keyid, sig = s["keyid"], s["sig"]
        if not isinstance(keyid, str) or not _HEX64.fullmatch(keyid) or not isinstance(sig, str) or not _HEX.fullmatch(sig):
            raise bad("a signature's keyid or sig is not lowercase hex")
        if keyid in out.signatures:
            raise bad(f"key {keyid[:16]} appears twice")
        out.signatures[keyid] = sig
    return out


def read_approvals(bundle: Path) -> Approvals | None:
    """The bundle's side file, or None when there is none."""
    path = side_file(bundle)
    try:  # a link, FIFO or device named like the side file: refused at once (fsutil.UnsafeFileError)
        with fsutil.open_regular(path) as f:
            data = f.read(MAX_SIDE_FILE + 1)
    except FileNotFoundError:
        return None
    except OSError as e:
        raise TrustError(f"{bundle}: cannot read {path.name} ({e.strerror})") from e
    if len(data) > MAX_SIDE_FILE:
        raise TrustError(f"{bundle}: {path.name} is larger than {MAX_SIDE_FILE} bytes")
    return parse_approvals(data, f"{bundle}: {path.name}")


def bundle_trust(members: dict[str, bytes], bundle: Path) -> tuple[Metadata[Targets], Metadata[Root]]:
    """The (unverified) targets metadata and the newest root the bundle carries."""
    try:
        tmd = Metadata[Targets].from_bytes(members["targets.json"])
    except KeyError as e:
        raise BundleFormatError(f"{bundle}: no metadata/targets.json") from e
    except Exception as e:
        raise BundleFormatError(f"{bundle}: metadata/targets.json is not TUF targets metadata ({e})") from e
    roots = sorted(int(n.split(".")[0]) for n in members if n.endswith(".root.json"))
    if not roots:
        raise BundleFormatError(f"{bundle}: carries no root metadata")
    try:
        root = Metadata[Root].from_bytes(members[f"{roots[-1]}.root.json"])
    except Exception as e:
        raise BundleFormatError(f"{bundle}: metadata/{roots[-1]}.root.json is not a TUF root ({e})") from e
    if duplicate_key_material(root.signed):
        raise TrustError(f"{bundle}: root v{root.signed.version} lists the same key material under more than one key id")
    return tmd, root


def check_accepts_approvals(members: dict[str, bytes], bundle: Path) -> None:
    """A bundle whose snapshot pins targets.json's length or hashes (made before approvals
    existed) cannot take added signatures: TUF would refuse the changed file."""
    try:
        meta = json.loads(members["snapshot.json"])["signed"]["meta"]["targets.json"]
    except (KeyError, ValueError, TypeError) as e:
        raise BundleFormatError(f"{bundle}: metadata/snapshot.json is missing or malformed") from e
    if isinstance(meta, dict) and ("hashes" in meta or "length" in meta):
        raise TrustError(f"{bundle}: its snapshot pins the hashes of targets.json (made by an older gapsync), so it "
                         "cannot take approvals; make the bundle again and approve that one")


def check_approvals(appr: Approvals, tmd: Metadata[Targets], root: Root, bundle: Path) -> None:
    """The side file approves exactly this targets document, and every signature in it is a
    valid signature of a targets key of ``root``; otherwise TrustError (exit 3)."""
    name = side_file(bundle).name
    digest = signed_digest(tmd)
    if appr.signed_sha256 != digest or appr.version != tmd.signed.version:
        raise TrustError(f"{bundle}: {name} approves other targets metadata (version {appr.version}, signed sha256 "
                         f"{appr.signed_sha256[:16]}…), not this bundle's (version {tmd.signed.version}, "
                         f"{digest[:16]}…): it belongs to another bundle or was edited")
    payload = signed_bytes(tmd)
    allowed = set(root.roles[Targets.type].keyids)
    for keyid, sig in appr.signatures.items():
        if keyid not in allowed:
            raise TrustError(f"{bundle}: {name} holds a signature by key {keyid[:16]}, which is not a key of the "
                             f"targets role in root v{root.version}")
        try:
            root.get_key(keyid).verify_signature(Signature(keyid, sig), payload)
        except (UnverifiedSignatureError, ValueError) as e:
            raise TrustError(f"{bundle}: {name}: the approval signature by key {keyid[:16]} does not verify "
                             "(forged or damaged)") from e


def merge(tmd: Metadata[Targets], appr: Approvals) -> int:
    """Add the side file's signatures to ``tmd`` (keys that signed already keep theirs); returns how many."""
    added = 0
    for keyid, sig in appr.signatures.items():
        if keyid not in tmd.signatures:
            tmd.signatures[keyid] = Signature(keyid, sig)
            added += 1
    return added


@dataclass
class ApproveResult:
    bundle: Path
    side_file: Path
    channel: str | None
    version: int
    signed_sha256: str
    keyid: str
    changed: bool
    already: str | None  # "bundle" or "approvals" when the key had signed already
    bundle_signers: list[str]
    approvers: list[str]
    valid: int  # signatures of targets keys that verify (bundle + side file), per the bundle's newest root
    threshold: int
    root_version: int

    def to_dict(self) -> dict[str, Any]:
        return {"bundle": str(self.bundle), "approvals_file": str(self.side_file), "channel": self.channel,
                "version": self.version, "signed_sha256": self.signed_sha256, "keyid": self.keyid,
                "changed": self.changed, "already_signed_in": self.already, "bundle_signers": self.bundle_signers,
                "approvers": self.approvers, "valid_signatures": self.valid, "threshold": self.threshold,
                "root_version": self.root_version}


def approve_bundle(bundle: Path, key: SigningKey, now: datetime | None = None) -> ApproveResult:
    """Sign BUNDLE's targets metadata with ``key`` into BUNDLE.approvals.json (merge; atomic;
    a key that signed already changes nothing). The bundle file is only read."""
    now = now or datetime.now(UTC)
    # two approvers of one bundle at once: serialise read-merge-write with a lock on the bundle
    # file itself (opened read-only: the bundle is never written)
    with fsutil.open_regular(bundle) as lock, BundleReader(bundle) as reader:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        members = reader.read_metadata()
        tmd, root_md = bundle_trust(members, bundle)
        check_accepts_approvals(members, bundle)
        root = root_md.signed
        channel = channel_of(tmd)
        if channel != channel_of(root_md):
            raise TrustError(f"{bundle}: targets metadata is for channel {channel!r}, its root for {channel_of(root_md)!r}")
        keyid = key.public.tuf_key().keyid
        role = root.roles[Targets.type]
        if keyid not in role.keyids:
            raise InputError(f"{key.path}: key {keyid[:16]} is not a key of the targets role of channel {channel!r} "
                             f"(root v{root.version} lists {', '.join(k[:16] for k in sorted(role.keyids))}); "
                             "only a targets key can approve")
        if tmd.signed.is_expired(now):
            raise TrustError(f"{bundle}: targets metadata expired on {tmd.signed.expires:%Y-%m-%d %H:%M}Z; "
                             "approving it would not make it importable")
        path = side_file(bundle)
        appr = read_approvals(bundle)
        if appr is not None:
            check_approvals(appr, tmd, root, bundle)
        else:
            appr = Approvals(channel, tmd.signed.version, signed_digest(tmd))
        bundle_signers = sorted(tmd.signatures)
        already = "bundle" if keyid in tmd.signatures else ("approvals" if keyid in appr.signatures else None)
        changed = False
        if already is None:
            tmd.sign(key.tuf_signer(), append=True)
            appr.signatures[keyid] = tmd.signatures[keyid].signature
            check_approvals(appr, tmd, root, bundle)  # our own signature, checked like the importer will
            write_atomic(path, appr.to_bytes())
            changed = True
        merge(tmd, appr)
        result = root.get_verification_result(Targets.type, signed_bytes(tmd), tmd.signatures)
    return ApproveResult(bundle, path, channel, tmd.signed.version, appr.signed_sha256, keyid, changed, already,
                         bundle_signers, sorted(appr.signatures), len(result.signed), role.threshold, root.version)
