"""Sub-commands; each module defines one click command or group and imports heavy code lazily."""

from __future__ import annotations

import click


def register(cli: click.Group) -> None:
    from gapsync.cli.commands import keys

    cli.add_command(keys.keys)
