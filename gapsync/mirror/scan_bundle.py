"""``gapsync scan BUNDLE``: every scanner and the policy on what a bundle carries, before (or
instead of) importing it. The bundle is read like the importer reads it (structure checked,
every blob hashed while it is copied to a temporary directory) but its signatures are not
checked against a pinned root: that is ``bundle verify``'s job, and the output says so."""

from __future__ import annotations

import json
import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from gapsync import fsutil
from gapsync.assess import ScanOutcome, advisory_file, load_advisories, scan_subjects
from gapsync.bundle.archive import BundleReader
from gapsync.errors import BundleFormatError, DigestMismatchError
from gapsync.hashing import copy_verified
from gapsync.mirror.subjects import build_subjects
from gapsync.model import BlobRef, Target
from gapsync.policies.schema import load_policy


def scan_bundle(bundle: Path, policy: str | Path | None = None, advisories: Path | None = None,
                now: datetime | None = None) -> tuple[ScanOutcome, dict]:
    tmp = fsutil.make_temp_dir(Path(tempfile.gettempdir()), "gapsync-scan-")
    try:
        with BundleReader(bundle) as reader:
            members = reader.read_metadata()
            try:
                signed = json.loads(members["targets.json"])["signed"]
                targets = [Target(p, BlobRef(t["hashes"]["sha256"], t["length"]), t.get("custom") or {})
                           for p, t in signed["targets"].items()]
            except (KeyError, ValueError, TypeError) as e:
                raise BundleFormatError(f"{bundle}: metadata/targets.json is missing or malformed") from e
            sizes = {t.blob.digest: t.blob.size for t in targets}
            for m in reader.iter_blobs():
                if m.part:  # format 2: the blob spans volumes; no volume alone holds it
                    raise BundleFormatError(f"{bundle}: carries {m.name}, a part of a blob that spans volumes; "
                                            "a volume with parts cannot be scanned alone: import the volumes")
                if m.digest not in sizes:
                    raise BundleFormatError(f"{bundle}: member blobs/sha256/{m.digest} is not a target")
                with fsutil.atomic_file(tmp / m.digest) as f:
                    copy_verified(reader.chunks(m), f, what=f"{bundle}: blob {m.digest}", sha256=m.digest, size=sizes[m.digest])
        missing = sorted({t.blob.digest for t in targets} - {p.name for p in tmp.iterdir()})
        if missing:
            raise DigestMismatchError(f"{bundle}: {len(missing)} target blob(s) are not in this bundle (a delta?); scan the full bundle")
        adv = next((t for t in targets if t.kind == "advisories"), None)
        db = load_advisories(tmp / adv.blob.digest if adv else advisory_file(advisories))
        outcome = scan_subjects(build_subjects(targets, lambda d: tmp / d), load_policy(policy), db, now or datetime.now(UTC))
        info_target = next((t for t in targets if t.kind == "bundle-info"), None)
        info = json.loads((tmp / info_target.blob.digest).read_bytes()) if info_target else {}
        return outcome, info
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
