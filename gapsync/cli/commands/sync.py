"""``gapsync sync``: the scheduled job. Resolve afresh, and write a delta bundle with only what the
other side does not have yet, or exit 5 when nothing changed.

The lock it resolved is kept (``--lock-out``, by default ``gapsync.lock`` beside the spec), so a
later ``bundle create --lock`` makes the same bundle. A sync of a Python-only spec first
revalidates the index pages of the last resolve (gapsync/bundler/revalidate.py) and reuses its
lock when none changed: the no-change run skips the resolver. The flow is gapsync/bundler/sync.py."""

from __future__ import annotations

from pathlib import Path

import click

from gapsync.cli.exit_codes import ExitCode
from gapsync.cli.options import BundleArgs, bundle_options, json_option
from gapsync.cli.output import emit_json


@click.command()
@bundle_options
@click.option("--receipt", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The air side's signed inventory (gapsync receipt): make the delta against it.")
@click.option("--receipt-key", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The air side's public key that signs receipts.")
@click.option("--full", is_flag=True, help="Carry every blob (a full bundle), not a delta.")
@click.option("--lock-out", type=click.Path(dir_okay=False, path_type=Path),
              help="Where to keep the lock this sync resolved [default: gapsync.lock beside the spec].")
@click.option("--resolve-always", is_flag=True,
              help="Resolve even when no index page changed since the last sync (the no-change shortcut off).")
@json_option
def sync(args: BundleArgs, receipt: Path | None, receipt_key: Path | None, full: bool, lock_out: Path | None,
         resolve_always: bool, as_json: bool) -> int:
    """Resolve the spec afresh and write a delta bundle, or exit 5 when nothing changed.

    Exit codes: 0 a bundle was made, 5 nothing new, 4 blocked by policy, 1 failed (3: a receipt
    that does not verify). Logs are JSON lines on stderr when it is not a terminal.
    """
    from gapsync.bundler.sync import SyncOptions
    from gapsync.bundler.sync import sync as run_sync
    from gapsync.cli.exit_codes import exit_code_for
    from gapsync.errors import GapsyncError
    from gapsync.log import event

    try:
        r = run_sync(args.spec_path, args.state, args.jobs, args.create,
                     SyncOptions(receipt, receipt_key, full, lock_out, resolve_always))
    except GapsyncError as e:
        event("sync.failed", level="error", reason=str(e), exit=int(exit_code_for(e)))
        raise
    if as_json:
        emit_json(r.to_dict())
    elif not r.nothing_new:
        click.echo(str(r.bundle))
    return int(ExitCode.NOTHING_NEW if r.nothing_new else ExitCode.OK)
