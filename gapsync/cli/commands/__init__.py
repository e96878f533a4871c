"""Sub-commands; each module defines one click command or group and imports heavy code lazily."""

from __future__ import annotations

import click


def register(cli: click.Group) -> None:
    from gapsync.cli.commands import (
        advisories,
        audit,
        bundle,
        channel,
        demo,
        importing,
        keys,
        push,
        receipt,
        resolve,
        scan,
        serve,
        sync,
        trust,
    )

    for cmd in (keys.keys, channel.channel, trust.trust, resolve.resolve, bundle.bundle, importing.import_,
                serve.serve, push.push, sync.sync, receipt.receipt, audit.audit, demo.demo, scan.scan, advisories.advisories):
        cli.add_command(cmd)
