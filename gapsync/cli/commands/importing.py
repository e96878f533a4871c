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
    from gapsync.mirror.exports.push import Exports, import_and_export
    from gapsync.mirror.importer import ImportOptions

    run = import_and_export(bundles, mirror, ImportOptions(policy, allow_partial), Exports(oci_push, pypi_upload, mlflow_uri))
    if as_json:
        emit_json(run.to_dict())
    else:
        for r in run.imports:
            if r.nothing_new:
                click.echo(f"{r.bundle}: nothing new (channel {r.channel} version {r.version} already imported)")
            else:
                click.echo(f"{r.bundle}: imported channel {r.channel} version {r.version}: {r.blobs_read} blobs "
                           f"({human_size(r.bytes_read)}); {r.files_new} new, {r.files_present} already present (files, images, models)")
                for key in r.blocked:
                    click.echo(f"  blocked by this side's policy, not published: {key}")
        if report := run.push:
            click.echo(f"pushed {len(report.images)} image(s) to {report.registry}: {report.blobs_uploaded} blobs uploaded "
                       f"({human_size(report.bytes_uploaded)}), {report.blobs_skipped} already there, {report.blobs_mounted} mounted")
        if uploaded := run.uploaded:
            click.echo(f"uploaded to {uploaded.repository}: {len(uploaded.uploaded)} files "
                       f"({human_size(uploaded.bytes_uploaded)}), {len(uploaded.skipped)} already there")
        for m in run.registered:
            click.echo(f"registered in {m.uri}: {', '.join(m.registered) or 'nothing new'}"
                       + (f" (already there: {', '.join(m.already)})" if m.already else ""))
    return ExitCode.NOTHING_NEW if run.nothing_new else ExitCode.OK
