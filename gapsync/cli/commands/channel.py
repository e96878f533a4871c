"""``gapsync channel``: the connected side's TUF repository of a channel."""

from __future__ import annotations

from pathlib import Path

import click

from gapsync.cli.options import DURATION, key_option, load_keys, passphrase_option, state_option


@click.group()
def channel() -> None:
    """Create and manage channels (one TUF repository each)."""


@channel.command("init")
@click.argument("name")
@state_option
@key_option
@click.option("--threshold", type=int, default=1, show_default=True,
              help="Signatures needed for root and targets (with several --key).")
@click.option("--online-key", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Key for snapshot and timestamp [default: the first --key].")
@click.option("--root-expires", type=DURATION, default="52w", show_default=True, help="Lifetime of root v1.")
@passphrase_option
def init(name: str, state: Path, key_files, threshold: int, online_key, root_expires, passphrase_file) -> None:
    """Create channel NAME in STATE and print its root to pin on the air-gapped side."""
    from gapsync.audit import AuditLog
    from gapsync.bundler.spec import NAME_RE
    from gapsync.bundler.trust_repo import ChannelRepo
    from gapsync.errors import InputError
    from gapsync.mirror.trust import fingerprint

    if not NAME_RE.match(name):
        raise InputError(f"channel name {name!r}: use letters, digits, '.', '_' or '-'")
    keys = load_keys(key_files, passphrase_file)
    online = load_keys((online_key,), passphrase_file)[0] if online_key else None
    path = ChannelRepo.init(state, name, keys, threshold, online, root_expires)
    fp = fingerprint(path.read_bytes())
    AuditLog(state / "audit.log").append("channel.init", "ok", channel=name, root=str(path), fingerprint=fp,
                                         keys=[k.public.tuf_key().keyid for k in keys], threshold=threshold)
    click.echo(f"channel {name}: root v1 written to {path}")
    click.echo(f"fingerprint: {fp}")
    click.echo("Carry this file to the air-gapped side once and pin it there with `gapsync trust pin`;")
    click.echo("two people compare the fingerprint it prints with the one above.")
