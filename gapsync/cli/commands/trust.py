"""``gapsync trust``: the air-gapped side's pinned roots."""

from __future__ import annotations

from pathlib import Path

import click

from gapsync.cli.options import json_option, mirror_option
from gapsync.cli.output import emit_json


@click.group()
def trust() -> None:
    """Pin and list the channel roots that this mirror trusts."""


@trust.command("pin")
@click.argument("root_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@mirror_option
@click.option("--namespace", metavar="NAME", default=None,
              help="Publish this channel into its own trees under MIRROR/ns/NAME/ (its names never meet other "
                   "channels'); chosen before the channel's first import.")
def pin(root_file: Path, mirror: Path, namespace: str | None) -> None:
    """Pin ROOT_FILE (a channel's 1.root.json) in MIRROR; compare the printed fingerprint."""
    from gapsync.mirror.layout import MirrorLayout
    from gapsync.mirror.trust import pin_root

    layout = MirrorLayout(mirror)
    channel, fp = pin_root(layout, root_file, namespace)
    click.echo(f"pinned channel {channel} in {mirror}"
               + (f", publishing into {layout.namespace_root(namespace)}/" if namespace else ""))
    click.echo(f"fingerprint: {fp}")
    click.echo("Compare it with the fingerprint printed by `gapsync channel init` on the connected side.")


@trust.command("list")
@mirror_option
@json_option
def list_(mirror: Path, as_json: bool) -> None:
    """Show pinned channels and the version each has imported."""
    from gapsync.mirror.layout import MirrorLayout

    layout = MirrorLayout(mirror)
    rows = [{"channel": c, **layout.pinned(c), "version": layout.state(c).version} for c in layout.channels()]
    if as_json:
        emit_json(rows)
        return
    for r in rows:
        click.echo(f"{r['channel']}: version {r['version']}, root fingerprint {r['fingerprint']}")
