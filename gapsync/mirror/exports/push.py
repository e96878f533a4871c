"""Publishing into servers after an import (an OCI registry, an index server, an MLflow
registry), with audit entries, and ``import_and_export``: the whole of ``gapsync import``
(verify and publish each bundle, then fill the servers it names), so that the command only
parses its options and prints what this returns."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from gapsync.audit import AuditLog
from gapsync.errors import GapsyncError
from gapsync.locking import exclusive
from gapsync.mirror.exports.oci_push import DEFAULT_CHUNK, PushReport, push_images
from gapsync.mirror.layout import MirrorLayout

if TYPE_CHECKING:
    from gapsync.mirror.exports.mlflow_registry import MlflowReport
    from gapsync.mirror.exports.pypi_upload import UploadReport
    from gapsync.mirror.importer import ImportOptions, ImportResult


@dataclass(frozen=True)
class Exports:
    """The servers an import also fills (``import --oci-push/--pypi-upload/--mlflow``); None: not that one."""

    oci_push: str | None = None  # a registry URL
    pypi_upload: str | None = None  # an index server's upload URL
    mlflow: str | None = None  # an MLflow tracking URI


@dataclass
class ImportRun:
    """What ``import_and_export`` did: each bundle's import, then what went to each server."""

    imports: list[ImportResult]
    push: PushReport | None = None  # None: no --oci-push, or no image in these bundles
    uploaded: UploadReport | None = None
    registered: list[MlflowReport] = field(default_factory=list)  # one per bundle that carries models

    @property
    def nothing_new(self) -> bool:
        """Exit 5: no bundle brought anything new, and no server got anything new (a push that
        ran counts as new, as before)."""
        return (all(r.nothing_new for r in self.imports) and not self.push
                and not any(m.registered for m in self.registered) and not (self.uploaded and self.uploaded.uploaded))

    def to_dict(self) -> dict | list:
        """One import's (or a list of several imports') result; with what went to servers, under
        ``imports`` next to ``push``, ``mlflow`` and ``pypi_upload``."""
        doc = [r.to_dict() for r in self.imports] if len(self.imports) > 1 else self.imports[0].to_dict()
        if not (self.push or self.registered or self.uploaded):
            return doc
        return {"imports": doc, "push": self.push.to_dict() if self.push else None,
                "mlflow": [m.to_dict() for m in self.registered],
                "pypi_upload": self.uploaded.to_dict() if self.uploaded else None}


def import_and_export(bundles: Sequence[Path], mirror: Path, options: ImportOptions | None = None,
                      exports: Exports = Exports()) -> ImportRun:
    """Import each bundle in order (``import_bundle``), then push their images, upload the
    Python files of their channels (all of them, also when already imported: a re-run resumes)
    and register their models, each with its audit entry. The first failure stops the run."""
    from gapsync.mirror.importer import import_bundle

    run = ImportRun([import_bundle(b, mirror, options=options) for b in bundles])
    if exports.oci_push:
        images = {p for r in run.imports for p in r.images}
        run.push = push_and_audit(mirror, exports.oci_push, images) if images else None
    if exports.pypi_upload:
        from gapsync.mirror.exports.pypi_upload import channel_files, upload_and_audit

        channels = {r.channel for r in run.imports}
        run.uploaded = upload_and_audit(mirror, exports.pypi_upload, only=channel_files(mirror, channels),
                                        channels=channels)
    if exports.mlflow:
        run.registered = [register_and_audit(mirror, exports.mlflow, r.models, bundle=r.bundle.name, channel=r.channel)
                          for r in run.imports if r.models]
    return run


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


def register_and_audit(mirror: Path, uri: str, models: list[tuple[str, str]], *, bundle: str, channel: str) -> MlflowReport:
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
