"""``gapsync serve``: serve the mirror read-only (the WSGI app under the embedded waitress server)."""

from __future__ import annotations

from pathlib import Path

import click

from gapsync.cli.options import mirror_option


@click.command()
@mirror_option
@click.option("--listen", default="127.0.0.1:8080", show_default=True, help="HOST:PORT to listen on.")
@click.option("--threads", type=click.IntRange(1, 256), default=16, show_default=True,
              help="Requests handled at once (more wait, their connections stay open).")
@click.option("--connections", type=click.IntRange(1, 100_000), default=1000, show_default=True,
              help="Connections served at once; more wait in the listen backlog.")
@click.option("--backlog", type=click.IntRange(1, 65535), default=2048, show_default=True,
              help="Listen backlog (the kernel also caps it at net.core.somaxconn).")
@click.option("--idle-timeout", type=click.IntRange(1, 3600), default=60, show_default=True,
              help="Seconds an idle keep-alive connection stays open.")
@click.option("--header-timeout", type=click.IntRange(1, 3600), default=20, show_default=True,
              help="Seconds a client has to send a whole request head (slow clients are closed).")
@click.option("--verbose", is_flag=True, help="Log every request, not only the refused ones.")
def serve(mirror: Path, listen: str, threads: int, connections: int, backlog: int, idle_timeout: int,
          header_timeout: int, verbose: bool) -> None:
    """Serve MIRROR read-only: the Python index (/simple/, PEP 503 + 691, /files/), the images
    (/v2/), models and datasets (Hugging Face Hub API), conda channels (/conda/) and Helm charts
    (/charts/).

    The same application runs under any WSGI server as gapsync.mirror.wsgi:application
    (GAPSYNC_MIRROR=DIR), see the operator guide."""
    import logging
    import sys

    from gapsync.errors import InputError
    from gapsync.mirror.layout import MirrorLayout
    from gapsync.mirror.serve import log, make_server

    host, _, port = listen.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise InputError(f"--listen {listen!r}: expected HOST:PORT")
    layout = MirrorLayout(mirror)
    if not any(p.exists() for p in (layout.pypi_simple, layout.oci_index, layout.models_index, layout.conda_root,
                                    layout.charts_root)):
        raise InputError(f"{mirror}: no index to serve yet (import a bundle first)")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        server = make_server(mirror, host.strip("[]"), int(port), verbose, threads=threads, backlog=backlog,
                             connections=connections, idle_timeout=idle_timeout, header_timeout=header_timeout)
    except OSError as e:
        raise InputError(f"--listen {listen}: {e.strerror or e}") from None
    click.echo(f"serving {mirror} on http://{listen}/simple/ (Ctrl-C to stop)", err=True)
    try:
        server.run()
    finally:
        server.close()
