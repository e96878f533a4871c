"""``gapsync bundle repair``: rebuild lost or damaged volumes from the parity files.

Runs on the air-gapped side, before ``import``. The parity headers are not trusted (their check
is an unkeyed sha256 anyone can recompute): a rebuilt volume gets its name only when it is a
canonical bundle carrying the surviving volumes' signed metadata and only signed blobs, each
with its signed length and sha256 (gapsync/bundle/parity.py). With ``--mirror`` that metadata is
also verified with TUF against the channel's pinned root first; without it, TUF checks the
volume at import, like any other.
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
@click.option("--mirror", "mirror", type=click.Path(file_okay=False, path_type=Path),
              help="Also verify the volumes' metadata with TUF against this mirror's pinned channel before "
                   "anything is rebuilt.")
@json_option
def repair(paths: tuple[Path, ...], out_dir: Path | None, mirror: Path | None, as_json: bool) -> None:
    """Check every volume of a bundle against its parity files (*.gapsync-parity) and rebuild the
    missing or damaged ones (any N, with N parity files). Exit 3 when too many are lost, or when
    a rebuilt volume is not what the signed metadata says (a forged parity file), or a file is a
    link or FIFO; nothing is written then."""
    from gapsync.bundle.parity import repair as do_repair
    from gapsync.bundle.parity import scan_set

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
    rebuilt = do_repair(list(paths), out_dir, scan=scan, verify=_tuf_check(mirror) if mirror else None)  # VerificationError (exit 3) when not repairable
    if as_json:
        emit_json({**scan.to_dict(), "rebuilt": [str(p) for p in rebuilt]})
        return
    for path in rebuilt:
        click.echo(f"rebuilt {path} ({human_size(path.stat().st_size)})")


def _tuf_check(mirror: Path):
    """The TUF verification an import would do (pinned root, signatures, thresholds, expiry,
    rollback), on a volume's metadata and its approvals side file; publishes nothing."""
    from datetime import UTC, datetime

    from gapsync import fsutil
    from gapsync.mirror.layout import MirrorLayout
    from gapsync.mirror.trust import apply_approvals, claimed_channel, verify_release

    layout = MirrorLayout(mirror)
    layout.require()

    def check(members: dict[str, bytes], volume: Path) -> None:
        members = apply_approvals(volume, dict(members))
        with fsutil.temp_dir("gapsync-repair-") as scratch:
            verify_release(layout, claimed_channel(members, volume), members, scratch, volume, datetime.now(UTC))

    return check
