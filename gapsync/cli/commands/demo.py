"""``gapsync demo``: the three zones on one machine."""

from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.option("--workdir", type=click.Path(file_okay=False, path_type=Path), default="demo-run", show_default=True,
              help="Scratch directory (emptied first).")
def demo(workdir: Path) -> None:
    """Run external index -> DMZ -> USB -> air-gapped mirror -> pip install, on this machine."""
    from gapsync.demo import Demo

    Demo(workdir, out=click.echo).main()
