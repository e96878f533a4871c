"""Push with an audit entry: used by ``import --oci-push`` and by ``gapsync push``."""

from __future__ import annotations

from pathlib import Path

from gapsync.audit import AuditLog
from gapsync.errors import GapsyncError
from gapsync.locking import exclusive
from gapsync.mirror.layout import MirrorLayout
from gapsync.mirror.targets.oci_push import DEFAULT_CHUNK, PushReport, push_images


def push_and_audit(mirror: Path, url: str, only: set[str] | None = None, jobs: int = 4,
                   chunk_size: int = DEFAULT_CHUNK) -> PushReport:
    layout = MirrorLayout(mirror)
    layout.require()
    audit = AuditLog(layout.audit_path)
    try:
        # shared with imports: an import must not change the layout under a running push
        with exclusive(layout.lock_path, f"mirror {mirror}", wait_seconds=5):
            report = push_images(layout, url, only=only, jobs=jobs, chunk_size=chunk_size)
    except GapsyncError as e:
        audit.append("oci.push", "error", registry=url, reason=str(e))
        raise
    audit.append("oci.push", "ok", registry=url, images=report.images, uploaded=report.blobs_uploaded,
                 skipped=report.blobs_skipped, mounted=report.blobs_mounted, bytes=report.bytes_uploaded)
    return report
