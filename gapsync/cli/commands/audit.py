"""``gapsync audit``: check the hash-chained audit log of either side."""

from __future__ import annotations

from pathlib import Path

import click

from gapsync.cli.options import json_option
from gapsync.cli.output import emit_json


@click.group()
def audit() -> None:
    """Check audit logs."""


@audit.command("verify")
@click.option("--mirror", type=click.Path(file_okay=False, path_type=Path), help="The air-gapped mirror.")
@click.option("--state", type=click.Path(file_okay=False, path_type=Path), help="The connected side's state.")
@json_option
def verify(mirror: Path | None, state: Path | None, as_json: bool) -> None:
    """Verify that no entry was edited, removed or reordered."""
    from gapsync.audit import verify as verify_log
    from gapsync.errors import InputError, VerificationError
    from gapsync.mirror.layout import MirrorLayout

    if mirror is not None and state is None:
        path = MirrorLayout(mirror).audit_path
    elif state is not None and mirror is None:
        from gapsync.bundler.trust_repo import state_audit_log

        path = state_audit_log(state).path
    else:
        raise InputError("audit verify: give exactly one of --mirror or --state")
    report = verify_log(path)
    if as_json:
        emit_json({"log": str(path), "entries": report.entries, "ok": report.ok, "problems": report.problems})
    if not report.ok:
        raise VerificationError(f"{path}: {len(report.problems)} problem(s): " + "; ".join(report.problems[:5]))
    if not as_json:
        click.echo(f"{path}: {report.entries} entries, chain intact")
