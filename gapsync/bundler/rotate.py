"""``channel rotate``: root version N+1 with new keys for some roles, or without a revoked key.

TUF's rule (specification 5.3.4): root N+1 must be signed by the threshold of root N's root keys
AND by the threshold of its own root keys; the air-gapped side's Updater follows the chain one
version at a time, and every bundle carries the whole chain, so a mirror that missed bundles
still catches up. This module refuses to write a root that would not pass those checks, or that
lists one key's material under two key ids (TUF counts key ids). Each rotation of an existing
channel is recorded in the state's audit log (``channel.rotate``, ok or error with the reason).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tuf.api.metadata import Metadata, Root, Targets

from gapsync.bundle.keys import PublicKey, SigningKey
from gapsync.bundle.tuf import duplicate_key_material, fingerprint, signed_bytes, to_bytes
from gapsync.bundler.trust_repo import TOP_ROLES, ChannelRepo, state_audit_log
from gapsync.errors import GapsyncError, InputError
from gapsync.locking import exclusive

THRESHOLD_ROLES = (Root.type, Targets.type)  # --threshold sets these, as in channel init


@dataclass
class RotateResult:
    channel: str
    path: Path
    old_version: int
    version: int
    fingerprint: str
    roles: dict[str, dict]  # role -> {"keyids": [...], "threshold": n}
    revoked: list[str]
    expires: datetime

    def to_dict(self) -> dict:
        return {"channel": self.channel, "root": str(self.path), "from_version": self.old_version,
                "version": self.version, "fingerprint": self.fingerprint, "roles": self.roles,
                "revoked": self.revoked, "expires": self.expires.isoformat()}


def _unique(keys):
    return list({k.raw if isinstance(k, PublicKey) else k.public.raw: k for k in keys}.values())


def parse_roles(text: str) -> list[str]:
    roles = [r.strip() for r in text.split(",") if r.strip()]
    bad = [r for r in roles if r not in TOP_ROLES]
    if bad or not roles:
        raise InputError(f"--roles {text!r}: use a comma-separated list of {', '.join(TOP_ROLES)}")
    return list(dict.fromkeys(roles))


def build_next_root(current: Metadata[Root], new_keys: list[SigningKey], roles: list[str], threshold: int | None,
                    revoke: list[PublicKey], expires_at: datetime) -> tuple[Metadata[Root], list[str]]:
    """Root N+1, unsigned: ``roles`` held by ``new_keys`` (replacing their keys) when new keys
    are given, ``revoke`` removed from every role, thresholds checked."""
    nxt = Metadata[Root].from_bytes(to_bytes(current))  # a deep copy, unrecognized fields included
    root = nxt.signed
    nxt.signatures.clear()
    root.version += 1
    root.expires = expires_at
    if new_keys:
        for role in roles:
            for keyid in list(root.roles[role].keyids):
                root.revoke_key(keyid, role)
            for k in _unique(new_keys):
                root.add_key(k.public.tuf_key(), role)
    revoked = []
    for pub in _unique(revoke):
        keyid = pub.tuf_key().keyid
        holding = [r for r in TOP_ROLES if keyid in root.roles[r].keyids]
        if not holding and keyid not in current.signed.keys:
            raise InputError(f"--revoke: key {keyid[:16]} is not a key of root v{current.signed.version}")
        for role in holding:
            root.revoke_key(keyid, role)
        revoked.append(keyid)
    if threshold is not None:
        targets_of_threshold = [r for r in THRESHOLD_ROLES if r in roles] if new_keys else list(THRESHOLD_ROLES)
        for role in targets_of_threshold:
            root.roles[role].threshold = threshold
    for role in TOP_ROLES:
        r = root.roles[role]
        if not r.keyids:
            raise InputError(f"root v{root.version}: the {role} role would have no key left; give --new-key for it")
        if not 1 <= r.threshold <= len(r.keyids):
            raise InputError(f"root v{root.version}: the {role} role would need {r.threshold} signature(s) from "
                             f"{len(r.keyids)} key(s); give --threshold (1 to {len(r.keyids)})")
    dups = duplicate_key_material(root)
    if dups:
        raise InputError(f"root v{root.version} would list the same key material under more than one key id "
                         f"({', '.join(d[:16] for d in dups)}): one key could count twice towards a threshold")
    return nxt, revoked


def rotate(state: Path, channel: str, old_keys: list[SigningKey], new_keys: list[SigningKey],
           roles: list[str] | None = None, threshold: int | None = None, revoke: list[PublicKey] | None = None,
           expires: timedelta = timedelta(weeks=52), now: datetime | None = None) -> RotateResult:
    """Write STATE/<channel>/<N+1>.root.json signed by both thresholds (root N's and its own),
    and record it (or why not, when the channel exists) in the state's audit log."""
    audit = state_audit_log(state)
    try:
        r = _rotate(state, channel, old_keys, new_keys, roles, threshold, revoke, expires, now)
    except GapsyncError as e:
        if (state / channel / "1.root.json").exists():
            audit.append("channel.rotate", "error", channel=channel, reason=str(e))
        raise
    audit.append("channel.rotate", "ok", channel=channel, root=str(r.path), version=r.version, fingerprint=r.fingerprint,
                 roles=r.roles, revoked=r.revoked)
    return r


def _rotate(state: Path, channel: str, old_keys: list[SigningKey], new_keys: list[SigningKey],
            roles: list[str] | None, threshold: int | None, revoke: list[PublicKey] | None,
            expires: timedelta, now: datetime | None) -> RotateResult:
    repo = ChannelRepo(state, channel)
    roles = list(roles or TOP_ROLES)
    revoke = revoke or []
    if threshold is not None and threshold < 1:
        raise InputError(f"--threshold {threshold}: must be at least 1")
    if not old_keys:
        raise InputError("channel rotate: give the current root keys with --old-key")
    now = (now or datetime.now(UTC)).replace(microsecond=0)
    with exclusive(repo.dir / ".lock", f"channel state {repo.dir}"):
        current = repo.root()
        cur = current.signed
        if duplicate_key_material(cur):
            raise InputError(f"{repo.dir}: root v{cur.version} lists the same key material under two key ids; "
                             "it cannot sign a rotation")
        nxt, revoked = build_next_root(current, new_keys, roles, threshold, revoke, now + expires)
        new = nxt.signed
        # sign with every given key that is a root key of N or of N+1 (TUF ignores the others)
        signers = {k.public.tuf_key().keyid: k for k in _unique([*old_keys, *new_keys])}
        for keyid, k in signers.items():
            if keyid in cur.roles[Root.type].keyids or keyid in new.roles[Root.type].keyids:
                nxt.sign(k.tuf_signer(), append=True)
        payload = signed_bytes(nxt)
        for who, root, opts in ((f"root v{cur.version}'s", cur, "--old-key"),
                                (f"its own (root v{new.version}'s)", new, "--old-key/--new-key")):
            result = root.get_verification_result(Root.type, payload, nxt.signatures)
            if not result.verified:
                raise InputError(f"channel {channel!r}: root v{new.version} needs {result.threshold} signature(s) of "
                                 f"{who} root keys and the {opts} options give {len(result.signed)}; TUF requires both "
                                 "thresholds")
        path = repo.add_root(nxt)
    roles_out = {r: {"keyids": sorted(new.roles[r].keyids), "threshold": new.roles[r].threshold} for r in TOP_ROLES}
    return RotateResult(channel, path, cur.version, new.version, fingerprint(path.read_bytes()), roles_out, revoked,
                        new.expires)
