"""``gapsync push``: (re-)push the mirror's images into a registry."""

from __future__ import annotations

from pathlib import Path

import click

from gapsync.cli.options import json_option, mirror_option
from gapsync.cli.output import emit_json, human_size


@click.command()
@mirror_option
@click.option("--to", "url", required=True, metavar="URL", help="Registry URL, e.g. https://registry.internal[/prefix].")
@click.option("--image", "images", multiple=True, metavar="REF",
              help="Only this image (full name as in the mirror, e.g. docker.io/library/python:3.12); repeatable.")
@click.option("--jobs", "-j", type=click.IntRange(1, 32), default=4, show_default=True, help="Parallel blob uploads.")
@click.option("--chunk-size", type=click.IntRange(1 << 20), default=64 << 20, show_default=True,
              help="Layers above this size go up in chunks (bytes).")
@json_option
def push(mirror: Path, url: str, images: tuple[str, ...], jobs: int, chunk_size: int, as_json: bool) -> None:
    """Push every image of MIRROR (or those named) into the registry at URL; a re-run sends only what is missing."""
    from gapsync.mirror.push import push_and_audit

    report = push_and_audit(mirror, url, set(images) or None, jobs=jobs, chunk_size=chunk_size)
    if as_json:
        emit_json(report.to_dict())
        return
    for ref in report.images:
        click.echo(f"pushed {ref}")
    for note in report.notes:
        click.echo(f"note: {note}")
    click.echo(f"{report.blobs_uploaded} blobs uploaded ({human_size(report.bytes_uploaded)}), "
               f"{report.blobs_skipped} already there, {report.blobs_mounted} mounted")
