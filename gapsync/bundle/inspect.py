"""``bundle inspect``: what a bundle says about itself, without trusting it (use ``verify`` for that).

Reads the metadata members and the ``gapsync/bundle.json`` blob (checked against its name);
skips every other blob, so inspecting a 50 GB bundle reads a few KiB.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tuf.api.metadata import Metadata, Root, Targets

from gapsync.bundle import approvals as approve
from gapsync.bundle.archive import BundleReader
from gapsync.bundle.records import BUNDLE_INFO_PATH, BundleInfo
from gapsync.errors import BundleFormatError, GapsyncError

MAX_INFO = 64 * 1024 * 1024


def _signers(path: Path, members: dict[str, bytes]) -> tuple[dict[str, Any] | None, int | None]:
    """The approvals side file (who approved, and whether it matches this bundle's targets) and
    the targets threshold of the newest root the bundle carries; both unverified."""
    threshold = None
    tmd: Metadata[Targets] | None
    root: Metadata[Root] | None
    try:
        tmd, root = approve.bundle_trust(members, path)
        threshold = root.signed.roles["targets"].threshold
    except GapsyncError:
        tmd = root = None
    if not approve.side_file(path).exists():
        return None, threshold
    out: dict[str, Any] = {"file": approve.side_file(path).name, "signatures": [], "matches": False, "error": None}
    try:
        appr = approve.read_approvals(path)
        assert appr is not None
        out["signatures"] = sorted(appr.signatures)
        if tmd is None or root is None:
            raise BundleFormatError(f"{path}: metadata unreadable")
        approve.check_approvals(appr, tmd, root.signed, path)
        out["matches"] = True
    except GapsyncError as e:
        out["error"] = str(e)
    return out, threshold


def inspect_bundle(path: Path) -> dict[str, Any]:
    """What the bundle says, unverified. Every field read here is unsigned input: one of the wrong
    type (a list where a mapping belongs, a length that is not a number, JSON nested too deep) is
    one line naming the bundle, exit 3, never a traceback."""
    try:
        return _inspect(path)
    except (ValueError, TypeError, AttributeError, KeyError, IndexError, RecursionError) as e:
        raise BundleFormatError(f"{path}: its metadata or bundle.json has a field of the wrong type or shape "
                                f"({type(e).__name__}: {str(e)[:120]}); not a bundle gapsync wrote") from e


def _inspect(path: Path) -> dict[str, Any]:
    with BundleReader(path) as reader:
        members = reader.read_metadata()
        try:
            targets_doc = json.loads(members["targets.json"])
            signed = targets_doc["signed"]
            targets = signed["targets"]
        except (KeyError, ValueError, TypeError, RecursionError) as e:
            raise BundleFormatError(f"{path}: metadata/targets.json is missing or malformed") from e
        if not isinstance(targets, dict) or not isinstance(signed, dict):
            raise BundleFormatError(f"{path}: metadata/targets.json does not list targets as a mapping")
        info_target = targets.get(BUNDLE_INFO_PATH, {})
        info_digest = (info_target.get("hashes") or {}).get("sha256")
        info = None
        blobs, blob_bytes = 0, 0
        for m in reader.iter_blobs():
            blobs += 1
            blob_bytes += m.size
            if m.digest == info_digest and info is None:
                info = json.loads(reader.read_blob_bytes(m, MAX_INFO))
    roots = sorted(int(n.split(".")[0]) for n in members if n.endswith(".root.json"))
    approvals, threshold = _signers(path, members)
    signatures = [s.get("keyid") for s in targets_doc.get("signatures", [])]
    total = sum(int(t.get("length", 0)) for t in targets.values())
    record = BundleInfo.from_dict(info, f"{path}: {BUNDLE_INFO_PATH}") if info is not None else BundleInfo()
    info = record.to_dict() if info is not None else None  # the same document (unknown fields kept)
    artifacts = (info or {}).get("artifacts", [])
    images = [a for a in record.artifacts if a.kind == "oci"]
    unique: dict[str, int] = {}
    for a in images:
        unique.update(a.blobs or {})
    image_bytes = sum(a.size or 0 for a in images)
    dedupe = {"images": len(images), "bytes_if_separate": image_bytes,
              "bytes_carried": sum(unique.values()) + sum((a.size or 0) - sum((a.blobs or {}).values()) for a in images)}
    dedupe["saved"] = dedupe["bytes_if_separate"] - dedupe["bytes_carried"]
    approval_signers = [{"keyid": k, "source": "approval", "valid": approvals["matches"]}
                        for k in approvals["signatures"] if k not in signatures] if approvals else []
    return {
        "file": str(path), "size": path.stat().st_size, "verified": False,
        "channel": (signed.get("x-gapsync") or {}).get("channel"), "version": signed.get("version"),
        "expires": signed.get("expires"), "root_versions": roots,
        "signatures": signatures, "approvals": approvals, "threshold": threshold,
        "signers": [{"keyid": k, "source": "bundle"} for k in signatures] + approval_signers,
        "targets": len(targets), "targets_bytes": total, "blobs_carried": blobs, "blob_bytes": blob_bytes,
        "bundle": {k: v for k, v in (info or {}).items() if k not in ("artifacts", "findings", "decisions")},
        "artifacts": artifacts, "image_dedupe": dedupe,
    }
