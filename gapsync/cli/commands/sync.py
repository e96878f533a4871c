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
from gapsync.cli.options import (
    DURATION,
    add_options,
    allow_partial_option,
    cache_option,
    jobs_option,
    json_option,
    key_option,
    load_keys,
    passphrase_option,
    policy_option,
    report_option,
    state_option,
    volume_options,
    volume_size,
)
from gapsync.cli.output import emit_json


@click.command()
@click.option("-f", "--file", "spec_path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default="gapsync.yaml", show_default=True)
@state_option
@key_option
@click.option("-o", "--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), required=True)
@click.option("--receipt", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The air side's signed inventory (gapsync receipt): make the delta against it.")
@click.option("--receipt-key", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The air side's public key that signs receipts.")
@click.option("--full", is_flag=True, help="Carry every blob (a full bundle), not a delta.")
@click.option("--lock-out", type=click.Path(dir_okay=False, path_type=Path),
              help="Where to keep the lock this sync resolved [default: gapsync.lock beside the spec].")
@click.option("--resolve-always", is_flag=True,
              help="Resolve even when no index page changed since the last sync (the no-change shortcut off).")
@click.option("--unapproved", is_flag=True,
              help="Sign targets with fewer keys than its threshold; the other key holders approve later (bundle approve).")
@click.option("--expires", type=DURATION, default="30d", show_default=True)
@cache_option
@jobs_option
@passphrase_option
@policy_option
@click.option("--advisories", type=click.Path(path_type=Path), help="Advisory store.")
@allow_partial_option
@report_option
@add_options(volume_options)
@json_option
def sync(spec_path, state, key_files, out_dir, receipt, receipt_key, full, lock_out, resolve_always, unapproved, expires, cache,
         jobs, passphrase_file, policy, advisories, allow_partial, report, max_volume_size, media, parity, as_json) -> int:
    """Resolve the spec afresh and write a delta bundle, or exit 5 when nothing changed.

    Exit codes: 0 a bundle was made, 5 nothing new, 4 blocked by policy, 1 failed (3: a receipt
    that does not verify). Logs are JSON lines on stderr when it is not a terminal.
    """
    from gapsync.bundler.cache import BlobCache, default_cache_dir
    from gapsync.bundler.create import DeltaOptions, ScanOptions, create_bundle
    from gapsync.errors import GapsyncError
    from gapsync.log import event, set_unattended

    set_unattended()  # the scheduled job: its progress is logged as JSON lines off a terminal
    base = None if full else ("receipt" if receipt else "history")
    event("sync.start", spec=str(spec_path), state=str(state), delta_from=base or "none")
    from gapsync.bundler import revalidate
    from gapsync.bundler.spec import load_spec

    spec = load_spec(spec_path)
    channel_dir = state / spec.channel
    reval = revalidate.Revalidation(None, reason="--resolve-always") if resolve_always else revalidate.check(channel_dir, spec, jobs)
    event("sync.revalidate", resolve=reval.lock_path is None, reason=reval.reason, pages=reval.pages,
          changed=reval.changed or None)
    try:
        import contextlib

        from gapsync.bundler.trust_repo import unapproved_signing

        keys = load_keys(key_files, passphrase_file)
        with unapproved_signing() if unapproved else contextlib.nullcontext():
            r = create_bundle(spec_path, reval.lock_path, state, keys, out_dir, BlobCache(cache or default_cache_dir()), jobs=jobs,
                              expires=expires,
                              scan=ScanOptions(policy, advisories, allow_partial, report, volume_size(max_volume_size, media), parity),
                              delta=DeltaOptions(base, receipt, receipt_key, only_if_changed=True))
    except GapsyncError as e:
        from gapsync.cli.exit_codes import exit_code_for

        event("sync.failed", level="error", reason=str(e), exit=int(exit_code_for(e)))
        raise
    if r.lock is not None:
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
