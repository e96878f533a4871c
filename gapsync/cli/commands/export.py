"""``gapsync export``: one target's approved files as hashed requirements or a PEP 751 lock."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from gapsync.cli.options import json_option, mirror_option
from gapsync.cli.output import emit_json


@click.command()
@mirror_option
@click.option("--target", "target", required=True, metavar="TARGET",
              help="A target id of the lock, e.g. cp311-manylinux_2_17_x86_64.")
@click.option("--channel", metavar="CHANNEL", help="The channel, when several carry this target.")
@click.option("--format", "fmt", type=click.Choice(["requirements", "pylock"]), default="requirements", show_default=True)
@click.option("--index-url", metavar="URL",
              help="Where clients reach this mirror's index (e.g. http://mirror:8080/targets/prod/TARGET/simple/): "
                   "written into the requirements, and the pylock's file URLs are made from it "
                   "[default for pylock: file:// URLs into MIRROR].")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Write here instead of stdout.")
@json_option
def export(mirror: Path, target: str, channel: str | None, fmt: str, index_url: str | None, output: Path | None,
           as_json: bool) -> None:
    """Write what TARGET was approved to install, from the channel's signed, imported release:
    hashed requirements for ``pip install --require-hashes -r`` or a pylock.toml for
    ``uv pip sync`` / ``uv pip install -r``."""
    from gapsync.fsutil import write_atomic
    from gapsync.mirror.exports.lockfiles import (
        export_target,
        files_url_for,
        render_pylock,
        render_requirements,
    )
    from gapsync.mirror.layout import MirrorLayout

    e = export_target(mirror, target, channel)
    if fmt == "pylock":
        files_url = files_url_for(index_url) if index_url else MirrorLayout(mirror.resolve()).pypi_files.as_uri() + "/"
        text = render_pylock(e, files_url)
    else:
        text = render_requirements(e, index_url)
    for fn in e.omitted:
        click.echo(f"warning: {fn} is locked for {target} but not published in this mirror (blocked on import): "
                   "left out", err=True)
    if output:
        write_atomic(output, text.encode())
    if as_json:
        emit_json({**e.to_dict(), "format": fmt, "output": str(output) if output else None})
    elif not output:
        sys.stdout.write(text)
