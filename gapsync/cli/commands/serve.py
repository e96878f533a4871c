"""``gapsync serve``: serve the mirror read-only."""

from __future__ import annotations

from pathlib import Path

import click

from gapsync.cli.options import mirror_option


@click.command()
@mirror_option
@click.option("--listen", default="127.0.0.1:8080", show_default=True, help="HOST:PORT to listen on.")
@click.option("--verbose", is_flag=True, help="Log every request.")
def serve(mirror: Path, listen: str, verbose: bool) -> None:
    """Serve MIRROR read-only: the Python index (/simple/, PEP 503 + 691, /files/) and the images (/v2/)."""
    from gapsync.errors import InputError
    from gapsync.mirror.serve import make_server

    host, _, port = listen.rpartition(":")
    if not host or not port.isdigit():
        raise InputError(f"--listen {listen!r}: expected HOST:PORT")
    if not any(p.exists() for p in (mirror / "pypi/simple", mirror / "oci/index.json", mirror / ".gapsync/models/index.json")):
        raise InputError(f"{mirror}: no index to serve yet (import a bundle first)")
    server = make_server(mirror, host.strip("[]"), int(port), verbose)
    click.echo(f"serving {mirror} on http://{listen}/simple/ (Ctrl-C to stop)", err=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
