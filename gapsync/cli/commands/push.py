"""``gapsync push``: (re-)push the mirror's images into a registry, its Python files into an index server."""

from __future__ import annotations

from pathlib import Path

import click

from gapsync.cli.options import json_option, mirror_option
from gapsync.cli.output import emit_json, human_size


@click.command()
@mirror_option
@click.option("--to", "url", metavar="URL", help="Registry URL, e.g. https://registry.internal[/prefix].")
@click.option("--pypi", "pypi_url", metavar="URL",
              help="An index server's upload URL (pypiserver http://host:8080/, devpi http://host/USER/INDEX/, "
                   "Nexus https://nexus/repository/REPO/, Artifactory https://host/artifactory/api/pypi/REPO): upload "
                   "every Python file of MIRROR that is not there yet. Credentials: ~/.pypirc or GAPSYNC_PYPI_USERNAME/"
                   "GAPSYNC_PYPI_PASSWORD (TWINE_USERNAME/TWINE_PASSWORD), never the command line.")
@click.option("--pypi-simple-url", metavar="URL",
              help="The server's simple index for that repository, when it is not URL/simple/ or URL/+simple/.")
@click.option("--image", "images", multiple=True, metavar="REF",
              help="Only this image (full name as in the mirror, e.g. docker.io/library/python:3.12); repeatable.")
@click.option("--jobs", "-j", type=click.IntRange(1, 32), default=4, show_default=True, help="Parallel blob uploads.")
@click.option("--chunk-size", type=click.IntRange(1 << 20), default=64 << 20, show_default=True,
              help="Layers above this size go up in chunks (bytes).")
@json_option
def push(mirror: Path, url: str | None, pypi_url: str | None, pypi_simple_url: str | None, images: tuple[str, ...],
         jobs: int, chunk_size: int, as_json: bool) -> None:
    """Push every image of MIRROR (or those named) into the registry at --to, and/or every Python
    file into the index server at --pypi; a re-run sends only what is missing."""
    if not url and not pypi_url:
        raise click.UsageError("name where to push: --to REGISTRY_URL and/or --pypi INDEX_UPLOAD_URL")
    doc: dict = {}
    if url:
        from gapsync.mirror.exports.push import push_and_audit

        report = push_and_audit(mirror, url, set(images) or None, jobs=jobs, chunk_size=chunk_size)
        doc["oci"] = report.to_dict()
        if not as_json:
            for ref in report.images:
                click.echo(f"pushed {ref}")
            for note in report.notes:
                click.echo(f"note: {note}")
            click.echo(f"{report.blobs_uploaded} blobs uploaded ({human_size(report.bytes_uploaded)}), "
                       f"{report.blobs_skipped} already there, {report.blobs_mounted} mounted")
    if pypi_url:
        from gapsync.mirror.exports.pypi_upload import upload_and_audit

        up = upload_and_audit(mirror, pypi_url, simple_url=pypi_simple_url)
        doc["pypi"] = up.to_dict()
        if not as_json:
            click.echo(f"{up.repository}: {len(up.uploaded)} files uploaded ({human_size(up.bytes_uploaded)}), "
                       f"{len(up.skipped)} already there (each upload checked by sha256)")
    if as_json:
        emit_json(doc["oci"] if url and not pypi_url else doc)
