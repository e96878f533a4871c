"""``gapsync scan``: scan model files for unsafe serialization, without loading them."""

from __future__ import annotations

from pathlib import Path

import click

from gapsync.cli.exit_codes import ExitCode
from gapsync.cli.options import json_option
from gapsync.cli.output import emit_json

SEVERITIES = ["critical", "high", "medium", "low", "info"]


@click.command()
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@click.option("--fail-on", type=click.Choice(SEVERITIES), default="high", show_default=True,
              help="Exit 4 when a finding of this severity or worse is present.")
@json_option
def scan(path: Path, fail_on: str, as_json: bool) -> int:
    """Scan PATH (a model file or a directory) and list what loading it could do.

    Nothing is imported, unpickled or executed. Exit status: 0 clean, 4 a finding at
    --fail-on or worse, 2 bad usage.
    """
    from gapsync.model import Severity
    from gapsync.scanner.base import scan_path

    report = scan_path(path)
    threshold = Severity(fail_on)
    blocking = report.at_least(threshold)
    if as_json:
        data = report.to_dict()
        data["fail_on"] = fail_on
        data["blocked"] = bool(blocking)
        emit_json(data)
    else:
        for f in report.findings:
            where = f.file + (f"!{f.location}" if f.location else "")
            at = f" @{f.offset}" if f.offset is not None else ""
            click.echo(f"{where}{at}: {f.severity.value} {f.rule}: {f.message}")
        worst = report.worst()
        click.echo(f"{report.files} file(s) scanned, {len(report.findings)} finding(s)"
                   + (f", worst {worst.value}" if worst else "")
                   + (f"; {len(blocking)} at {fail_on} or worse" if blocking else ""), err=True)
    return int(ExitCode.BLOCKED_BY_POLICY if blocking else ExitCode.OK)
