"""``gapsync keys``: make signing keys."""

from __future__ import annotations

from pathlib import Path

import click


@click.group()
def keys() -> None:
    """Make and show Ed25519 signing keys."""


@keys.command("generate")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), required=True, help="Directory for NAME.key and NAME.pub.")
@click.option("--name", required=True, help="Key name (file stem).")
@click.option("--passphrase-file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Encrypt the private key with the passphrase in this file (or set GAPSYNC_KEY_PASSPHRASE).")
def generate(out_dir: Path, name: str, passphrase_file: Path | None) -> None:
    """Write OUT/NAME.key (PKCS#8 PEM, 0600) and OUT/NAME.pub (minisign format)."""
    from gapsync.bundle import keys as keymod

    key_path, pub_path = keymod.generate(out_dir, name, passphrase_file)
    pub = keymod.load_public_key(pub_path)
    click.echo(f"private key: {key_path} (keep it offline for root/targets roles)")
    click.echo(f"public key:  {pub_path}")
    click.echo(f"tuf key id:  {pub.tuf_key().keyid}")
