"""``gapsync bundle repair``: rebuild lost or damaged volumes from the parity files.

Runs on the air-gapped side, before ``import``: it needs no key, no mirror and no trust, because
what it rebuilds is checked twice, by the sha256 the parity headers record and then by TUF when
the volume is imported like any other.
"""

from __future__ import annotations

from pathlib import Path

import click

from gapsync.cli.options import json_option
from gapsync.cli.output import emit_json, human_size


@click.command("repair")
@click.argument("paths", metavar="DIR|FILES...", nargs=-1, required=True,
                type=click.Path(exists=True, path_type=Path))
@click.option("-o", "--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Write the rebuilt files here [default: the parity files' directory, replacing damaged copies].")
@json_option
def repair(paths: tuple[Path, ...], out_dir: Path | None, as_json: bool) -> None:
    """Check every volume of a bundle against its parity files (*.gapsync-parity) and rebuild the
    missing or damaged ones (any N, with N parity files). Exit 3 when too many are lost."""
    from gapsync.bundler.parity import repair as do_repair
    from gapsync.bundler.parity import scan_set

    scan = scan_set(list(paths))
    h = scan.header
    if not as_json:
        click.echo(f"{h.bundle}: {h.k} volume(s), {h.n} parity file(s)")
        for p in scan.lost:
            click.echo(f"  {p.name}: {p.status}" + (f" ({p.reason})" if p.reason else ""))
    if not scan.lost:
        if as_json:
            emit_json({**scan.to_dict(), "rebuilt": []})
        else:
            click.echo("nothing to repair: every volume and parity file is intact")
        return
    if not scan.repairable and as_json:
        emit_json({**scan.to_dict(), "rebuilt": []})
    rebuilt = do_repair(list(paths), out_dir, scan=scan)  # VerificationError (exit 3) when not repairable
    if as_json:
        emit_json({**scan.to_dict(), "rebuilt": [str(p) for p in rebuilt]})
        return
    for p in rebuilt:
        click.echo(f"rebuilt {p} ({human_size(p.stat().st_size)})")
