"""The scheduled job's flow (``gapsync sync``): resolve afresh, or reuse the last lock when no
index page changed since (``revalidate``); make a delta bundle against the air side's receipt or
the channel's history; keep the lock the bundle was made from; log each step as an event.

The flow lives here, not in the command, so a library caller (a scheduler in Python) gets the
same steps and events as ``gapsync sync``; the command parses options, maps errors to exit codes
and prints."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from gapsync import fsutil
from gapsync.bundler import revalidate
from gapsync.bundler.create import CreateResult, DeltaOptions
from gapsync.bundler.lock import Lock
from gapsync.bundler.spec import load_spec
from gapsync.log import event, set_unattended


@dataclass(frozen=True)
class SyncOptions:
    """What makes a sync other than the bundle options it shares with ``bundle create``."""

    receipt: Path | None = None       # the air side's signed inventory: the delta's base
    receipt_key: Path | None = None   # the public key that signs receipts
    full: bool = False                # every blob, not a delta
    lock_out: Path | None = None      # where to keep the lock [default: gapsync.lock beside the spec]
    resolve_always: bool = False      # the no-change shortcut off


# ``create(lock_path, delta)``: bundle create with the shared options (cli.options.BundleArgs.create)
CreateFn = Callable[[Path | None, DeltaOptions], CreateResult]


def sync(spec_path: Path, state: Path, jobs: int, create: CreateFn, opts: SyncOptions) -> CreateResult:
    """Run one sync; the result says whether a bundle was made (``nothing_new`` otherwise).

    Errors propagate (the caller logs ``sync.failed`` with the exit code it maps them to)."""
    set_unattended()  # the scheduled job: its progress is logged as JSON lines off a terminal
    base = None if opts.full else ("receipt" if opts.receipt else "history")
    event("sync.start", spec=str(spec_path), state=str(state), delta_from=base or "none")
    spec = load_spec(spec_path)
    channel_dir = state / spec.channel
    reval = (revalidate.Revalidation(None, reason="--resolve-always") if opts.resolve_always
             else revalidate.check(channel_dir, spec, jobs))
    event("sync.revalidate", resolve=reval.lock_path is None, reason=reval.reason, pages=reval.pages,
          changed=reval.changed or None)
    r = create(reval.lock_path, DeltaOptions(base, opts.receipt, opts.receipt_key, only_if_changed=True))
    if isinstance(r.lock, Lock):  # the lock this bundle was made from (CreateResult.lock; None when none)
        if reval.lock_path is None:
            revalidate.record(channel_dir, spec, r.lock, jobs, reval.seen)
        lock_file = opts.lock_out or spec_path.with_name("gapsync.lock")
        fsutil.write_atomic(lock_file, r.lock.dumps().encode())
        event("sync.lock", lock=str(lock_file), resolved=reval.lock_path is None)
    if r.version_differences:
        event("sync.version_differences", level="warning", projects=r.version_differences)
    if r.nothing_new:
        event("sync.nothing_new", channel=r.channel, version=r.version, downloaded_bytes=r.downloaded)
    else:
        event("sync.bundle", bundle=str(r.bundle), channel=r.channel, version=r.version, kind=r.kind,
              blobs_carried=r.carried, bundle_size=r.bundle_size, blocked=r.blocked)
    return r
