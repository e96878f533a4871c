"""Sub-commands; each module defines one click command or group and imports heavy code lazily.

Why a lazy group: ``gapsync scan model.pkl`` runs in CI loops and pre-commit hooks where the
interpreter start-up *is* the cost. Importing fourteen command modules (and what they import)
to run one of them doubled the start-up, so a command's module is imported only when that
command runs, or when ``--help`` lists them all.
"""

from __future__ import annotations

import importlib

import click

# command name -> "module:attribute" under gapsync.cli.commands, in the order --help lists them
COMMANDS: dict[str, str] = {
    "keys": "keys:keys",
    "channel": "channel:channel",
    "trust": "trust:trust",
    "resolve": "resolve:resolve",
    "bundle": "bundle:bundle",
    "import": "importing:import_",
    "serve": "serve:serve",
    "push": "push:push",
    "export": "export:export",
    "sync": "sync:sync",
    "receipt": "receipt:receipt",
    "audit": "audit:audit",
    "demo": "demo:demo",
    "scan": "scan:scan",
    "advisories": "advisories:advisories",
}


def load_command(name: str) -> click.Command:
    module, attr = COMMANDS[name].split(":")
    cmd = getattr(importlib.import_module(f"gapsync.cli.commands.{module}"), attr)
    if cmd.name != name:
        raise RuntimeError(f"gapsync.cli.commands.{module}:{attr} is named {cmd.name!r}, registered as {name!r}")
    return cmd


class LazyGroup(click.Group):
    """A click group whose sub-commands are imported on first use (click's documented pattern)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [*COMMANDS, *(n for n in super().list_commands(ctx) if n not in COMMANDS)]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in COMMANDS:
            self.add_command(load_command(cmd_name))
        return super().get_command(ctx, cmd_name)
