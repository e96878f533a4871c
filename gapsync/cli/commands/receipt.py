"""``gapsync receipt``: the air side's signed inventory, for sites with a return path."""

from __future__ import annotations

from pathlib import Path

import click

from gapsync.cli.options import json_option, mirror_option, passphrase_option
from gapsync.cli.output import emit_json


@click.command()
@mirror_option
@click.option("-o", "--out", type=click.Path(dir_okay=False, path_type=Path), required=True)
@click.option("--key", "key_file", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=True,
              help="The air side's receipt key (its .pub goes to the DMZ once, as --receipt-key).")
@passphrase_option
@json_option
def receipt(mirror: Path, out: Path, key_file: Path, passphrase_file: Path | None, as_json: bool) -> None:
    """Write a signed inventory of what MIRROR holds, for `gapsync sync --receipt`."""
    from gapsync.bundle.keys import load_signing_key
    from gapsync.mirror.receipts import write_receipt

    body = write_receipt(mirror, out, load_signing_key(key_file, passphrase_file))
    if as_json:
        emit_json({"receipt": str(out), "blobs": len(body["blobs"]), "channels": body["channels"]})
    else:
        click.echo(f"{out}: {len(body['blobs'])} blobs, channels {body['channels']}")
