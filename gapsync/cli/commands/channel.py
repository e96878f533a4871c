"""``gapsync channel``: the connected side's TUF repository of a channel."""

from __future__ import annotations

from pathlib import Path

import click

from gapsync.cli.options import DURATION, json_option, key_option, load_keys, passphrase_option, state_option


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
    from gapsync.bundler.trust_repo import ChannelRepo

    keys = load_keys(key_files, passphrase_file)
    online = load_keys((online_key,), passphrase_file)[0] if online_key else None
    made = ChannelRepo.init(state, name, keys, threshold, online, root_expires)
    click.echo(f"channel {name}: root v1 written to {made.path}")
    click.echo(f"fingerprint: {made.fingerprint}")
    click.echo("Carry this file to the air-gapped side once and pin it there with `gapsync trust pin`;")
    click.echo("two people compare the fingerprint it prints with the one above.")


@channel.command("rotate")
@click.argument("name")
@state_option
@click.option("--old-key", "old_key_files", multiple=True, required=True,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A root key of the current root (repeat up to its threshold): signs the rotation.")
@click.option("--new-key", "new_key_files", multiple=True,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A key that takes over the --roles (repeat for several); it also signs the new root.")
@click.option("--roles", "roles_text", default="root,targets,snapshot,timestamp", show_default=True,
              help="Roles whose keys the --new-key options replace.")
@click.option("--threshold", type=int,
              help="Signatures needed for root and targets among --roles [default: unchanged].")
@click.option("--revoke", "revoke_files", multiple=True,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A public key (.pub) to remove from every role, e.g. a compromised one; repeat for several.")
@click.option("--root-expires", type=DURATION, default="52w", show_default=True, help="Lifetime of the new root.")
@passphrase_option
@json_option
def rotate(name: str, state: Path, old_key_files, new_key_files, roles_text, threshold, revoke_files, root_expires,
           passphrase_file, as_json) -> None:
    """Write root version N+1 of channel NAME with new keys, signed by the old and the new root keys.

    The next `bundle create` carries the whole root chain and signs with the new keys; the
    air-gapped side follows the chain. Example, one key replaced everywhere:
    `gapsync channel rotate prod --state STATE --old-key old.key --new-key new.key`.
    Revoking a compromised targets key: `--old-key a.key --revoke b.pub`.
    """
    from gapsync.bundle.keys import load_public_key
    from gapsync.bundler.rotate import parse_roles
    from gapsync.bundler.rotate import rotate as rotate_root
    from gapsync.cli.output import emit_json
    from gapsync.errors import InputError

    roles = parse_roles(roles_text)
    roles_given = click.get_current_context().get_parameter_source("roles_text") != click.core.ParameterSource.DEFAULT
    if roles_given and not new_key_files:
        raise InputError("--roles needs --new-key: the keys that take over those roles")
    old = load_keys(old_key_files, passphrase_file)
    new = load_keys(new_key_files, passphrase_file)
    revoke = [load_public_key(p) for p in revoke_files]
    r = rotate_root(state, name, old, new, roles if new else None, threshold, revoke, root_expires)
    if as_json:
        emit_json(r.to_dict())
        return
    click.echo(f"channel {name}: root v{r.version} written to {r.path} (replaces v{r.old_version}, "
               f"expires {r.expires:%Y-%m-%d})")
    for role, info in r.roles.items():
        click.echo(f"  {role}: {info['threshold']} of {', '.join(k[:16] for k in info['keyids'])}")
    if r.revoked:
        click.echo(f"  revoked: {', '.join(k[:16] for k in r.revoked)}")
    click.echo(f"fingerprint: {r.fingerprint}")
    click.echo("The next bundle carries the root chain and must be signed with the new keys; "
               "the air-gapped side follows the chain on import.")
