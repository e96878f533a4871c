"""``gapsync import``: verify a bundle and publish it into the mirror."""

from __future__ import annotations

from pathlib import Path

import click

from gapsync.cli.exit_codes import ExitCode
from gapsync.cli.options import allow_partial_option, json_option, mirror_option, policy_option
from gapsync.cli.output import emit_json, human_size


@click.command("import")
@click.argument("bundles", metavar="BUNDLE...", nargs=-1, required=True,
                type=click.Path(exists=True, dir_okay=False, path_type=Path))
@mirror_option
@click.option("--oci-push", "oci_push", metavar="URL",
              help="Also push the images of these bundles into this registry (e.g. https://registry.internal/mirror).")
@click.option("--pypi-upload", "pypi_upload", metavar="URL",
              help="Also upload these bundles' Python files into this index server (its upload URL, e.g. "
                   "http://devpi:3141/USER/INDEX/); credentials from ~/.pypirc or GAPSYNC_PYPI_USERNAME/PASSWORD.")
@click.option("--mlflow", "mlflow_uri", metavar="URI",
              help="Also register the bundles' models in this MLflow registry (e.g. http://mlflow.internal:5000).")
@policy_option
@allow_partial_option
@json_option
def import_(bundles: tuple[Path, ...], mirror: Path, oci_push: str | None, pypi_upload: str | None,
            mlflow_uri: str | None, policy: str | None, allow_partial: bool, as_json: bool) -> int:
    """Verify each BUNDLE (in order), scan it again under this side's policy, and publish it into
    MIRROR. Exit 5 when nothing was new, 4 when the policy blocks."""
    from gapsync.mirror.importer import ImportOptions, import_bundle

    results = [import_bundle(b, mirror, options=ImportOptions(policy, allow_partial)) for b in bundles]
    report = None
    if oci_push:
        from gapsync.mirror.exports.push import push_and_audit

        images = {p for r in results for p in r.images}
        report = push_and_audit(mirror, oci_push, images) if images else None
    uploaded = None
    if pypi_upload:  # every Python file of the imported releases (also when already imported: a re-run resumes)
        from gapsync.mirror.exports.pypi_upload import channel_files, upload_and_audit

        channels = {r.channel for r in results}
        uploaded = upload_and_audit(mirror, pypi_upload, only=channel_files(mirror, channels), channels=channels)
    registered = []
    if mlflow_uri:
        from gapsync.mirror.exports.push import register_and_audit

        registered = [register_and_audit(mirror, mlflow_uri, r.models, bundle=r.bundle.name, channel=r.channel)
                      for r in results if r.models]
    if as_json:
        doc = [r.to_dict() for r in results] if len(results) > 1 else results[0].to_dict()
        extra = {"push": report.to_dict() if report else None, "mlflow": [m.to_dict() for m in registered],
                 "pypi_upload": uploaded.to_dict() if uploaded else None}
        emit_json({"imports": doc, **extra} if (report or registered or uploaded) else doc)
    else:
        for r in results:
            if r.nothing_new:
                click.echo(f"{r.bundle}: nothing new (channel {r.channel} version {r.version} already imported)")
            else:
                click.echo(f"{r.bundle}: imported channel {r.channel} version {r.version}: {r.blobs_read} blobs "
                           f"({human_size(r.bytes_read)}); {r.files_new} new, {r.files_present} already present (files, images, models)")
                for key in r.blocked:
                    click.echo(f"  blocked by this side's policy, not published: {key}")
        if report:
            click.echo(f"pushed {len(report.images)} image(s) to {report.registry}: {report.blobs_uploaded} blobs uploaded "
                       f"({human_size(report.bytes_uploaded)}), {report.blobs_skipped} already there, {report.blobs_mounted} mounted")
        if uploaded:
            click.echo(f"uploaded to {uploaded.repository}: {len(uploaded.uploaded)} files "
                       f"({human_size(uploaded.bytes_uploaded)}), {len(uploaded.skipped)} already there")
        for m in registered:
            click.echo(f"registered in {m.uri}: {', '.join(m.registered) or 'nothing new'}"
                       + (f" (already there: {', '.join(m.already)})" if m.already else ""))
    new_registrations = any(m.registered for m in registered)
    new_uploads = bool(uploaded and uploaded.uploaded)
    return (ExitCode.NOTHING_NEW if all(r.nothing_new for r in results) and not report and not new_registrations
            and not new_uploads else ExitCode.OK)
