"""``gapsync sync``: the scheduled job. Resolve afresh, and write a delta bundle with only what the
other side does not have yet, or exit 5 when nothing changed.

The lock it resolved is kept (``--lock-out``, by default ``gapsync.lock`` beside the spec), so a
later ``bundle create --lock`` makes the same bundle. A sync of a Python-only spec first
revalidates the index pages of the last resolve (gapsync/bundler/revalidate.py) and reuses its
lock when none changed: the no-change run skips the resolver."""

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
    from gapsync.bundler import revalidate
    from gapsync.bundler.create import DeltaOptions
    from gapsync.bundler.spec import load_spec
    from gapsync.errors import GapsyncError
    from gapsync.log import event, set_unattended

    spec_path, state, jobs = args.spec_path, args.state, args.jobs
    set_unattended()  # the scheduled job: its progress is logged as JSON lines off a terminal
    base = None if full else ("receipt" if receipt else "history")
    event("sync.start", spec=str(spec_path), state=str(state), delta_from=base or "none")
    spec = load_spec(spec_path)
    channel_dir = state / spec.channel
    reval = revalidate.Revalidation(None, reason="--resolve-always") if resolve_always else revalidate.check(channel_dir, spec, jobs)
    event("sync.revalidate", resolve=reval.lock_path is None, reason=reval.reason, pages=reval.pages,
          changed=reval.changed or None)
    try:
        r = args.create(reval.lock_path, DeltaOptions(base, receipt, receipt_key, only_if_changed=True))
    except GapsyncError as e:
        from gapsync.cli.exit_codes import exit_code_for

        event("sync.failed", level="error", reason=str(e), exit=int(exit_code_for(e)))
        raise
    from gapsync.bundler.lock import Lock

    if isinstance(r.lock, Lock):  # the lock this bundle was made from (CreateResult.lock; None when none)
        from gapsync.fsutil import write_atomic

        if reval.lock_path is None:
            revalidate.record(channel_dir, spec, r.lock, jobs, reval.seen)
        lock_file = lock_out or spec_path.with_name("gapsync.lock")
        write_atomic(lock_file, r.lock.dumps().encode())
        event("sync.lock", lock=str(lock_file), resolved=reval.lock_path is None)
    if r.version_differences:
        event("sync.version_differences", level="warning", projects=r.version_differences)
    if r.nothing_new:
        event("sync.nothing_new", channel=r.channel, version=r.version, downloaded_bytes=r.downloaded)
    else:
        event("sync.bundle", bundle=str(r.bundle), channel=r.channel, version=r.version, kind=r.kind,
              blobs_carried=r.carried, bundle_size=r.bundle_size, blocked=r.blocked)
    if as_json:
        emit_json(r.to_dict())
    elif not r.nothing_new:
        click.echo(str(r.bundle))
    return int(ExitCode.NOTHING_NEW if r.nothing_new else ExitCode.OK)
