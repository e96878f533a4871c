"""Publishing into servers after an import (an OCI registry, an MLflow registry), with audit entries."""

from __future__ import annotations

from pathlib import Path

from gapsync.audit import AuditLog
from gapsync.errors import GapsyncError
from gapsync.locking import exclusive
from gapsync.mirror.exports.oci_push import DEFAULT_CHUNK, PushReport, push_images
from gapsync.mirror.layout import MirrorLayout


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


def register_and_audit(mirror: Path, uri: str, models: list[tuple[str, str]], *, bundle: str, channel: str):
    """``import --mlflow``: register the bundle's models in an MLflow registry, with an audit entry."""
    from gapsync.mirror.exports.mlflow_registry import register_models

    layout = MirrorLayout(mirror)
    audit = AuditLog(layout.audit_path)
    try:
        with exclusive(layout.lock_path, f"mirror {mirror}", wait_seconds=5):
            report = register_models(layout, uri, models, bundle=bundle, channel=channel)
    except GapsyncError as e:
        audit.append("mlflow.register", "error", registry=uri, bundle=bundle, reason=str(e))
        raise
    audit.append("mlflow.register", "ok", registry=uri, bundle=bundle, registered=report.registered, already=report.already)
    return report
