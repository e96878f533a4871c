"""``gapsync scan``: run the scanners and the policy standalone, on files, a spec or a bundle."""

from __future__ import annotations

from pathlib import Path

import click

from gapsync.cli.exit_codes import ExitCode
from gapsync.cli.options import cache_option, json_option, policy_option, report_option
from gapsync.cli.output import emit_json, table

SEVERITIES = ["critical", "high", "medium", "low", "info"]


@click.command()
@click.argument("path", required=False, type=click.Path(exists=True, path_type=Path))
@click.option("--spec", "spec_path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Scan everything this spec would carry (resolve and fetch, no bundle).")
@click.option("--lock", "lock_path", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="With --spec.")
@click.option("--fail-on", type=click.Choice(SEVERITIES), default="high", show_default=True,
              help="For files and directories: exit 4 when a finding of this severity or worse is present.")
@policy_option
@click.option("--advisories", type=click.Path(path_type=Path), help="Advisory store [default: the local store].")
@report_option
@cache_option
@click.option("--jobs", "-j", type=click.IntRange(1, 64), default=8, show_default=True,
              help="With --spec: parallel downloads. For a directory: at most this many processes scan its "
                   "files (one per CPU at most).")
@json_option
def scan(path: Path | None, spec_path: Path | None, lock_path: Path | None, fail_on: str, policy: str | None,
         advisories: Path | None, report: Path | None, cache: Path | None, jobs: int, as_json: bool) -> int:
    """Scan PATH (model files or a directory), a BUNDLE (a .gapsync file), or --spec gapsync.yaml.

    Nothing is imported, unpickled or executed. Files and directories get the model scanner
    (exit 4 at --fail-on or worse); a bundle or a spec gets every scanner and the policy (exit 4
    when it blocks something).
    """
    from gapsync.errors import InputError

    if (path is None) == (spec_path is None):
        raise InputError("scan: give PATH (files, a directory or a bundle) or --spec gapsync.yaml")
    if spec_path is not None or (path is not None and path.is_file() and path.name.endswith(".gapsync")):
        return _scan_artifacts(path, spec_path, lock_path, policy, advisories, report, cache, jobs, as_json)
    return _scan_files(path, fail_on, as_json, jobs)  # type: ignore[arg-type]


def _scan_artifacts(bundle, spec_path, lock_path, policy, advisories, report, cache, jobs, as_json) -> int:
    info: dict = {}
    if spec_path is not None:
        from gapsync.bundler.cache import BlobCache, default_cache_dir
        from gapsync.bundler.create import ScanOptions, scan_spec

        outcome = scan_spec(spec_path, lock_path, BlobCache(cache or default_cache_dir()), jobs,
                            ScanOptions(policy, advisories))
        what = str(spec_path)
    else:
        from gapsync.mirror.scan_bundle import scan_bundle

        outcome, info = scan_bundle(bundle, policy, advisories)
        what = f"{bundle} (contents hashed; signatures not checked: use bundle verify)"
    doc = {"scanned": what, "decisions": outcome.decision_dicts(), "findings": outcome.finding_dicts(),
           "licenses": outcome.licenses, "advisories": outcome.advisories, "policy": outcome.policy,
           "counts": outcome.counts(), "blocked": outcome.blocked()}
    if report:
        from gapsync.scanner.report import render_html

        report.write_text(render_html({**info, "findings": doc["findings"], "decisions": doc["decisions"],
                                       "advisories": outcome.advisories, "policy": outcome.policy,
                                       "artifacts": info.get("artifacts", [])}))
    if as_json:
        emit_json(doc)
    else:
        rows = [[d["artifact"], d["action"], outcome.licenses.get(d["artifact"]) or "?",
                 str(len(outcome.findings.get(d["artifact"], []))),
                 (d["reasons"][0]["message"][:70] if d["reasons"] and d["action"] != "allow" else "")]
                for d in doc["decisions"]]
        click.echo(table(rows, ["artifact", "decision", "license", "findings", "why"]))
        c = doc["counts"]
        click.echo(f"{what}: {c['allow']} allowed, {c['warn']} warned, {c['block']} blocked "
                   f"(policy {outcome.policy['name']}, advisories: {'yes' if outcome.advisories else 'none'})", err=True)
    return int(ExitCode.BLOCKED_BY_POLICY if doc["blocked"] else ExitCode.OK)


def _scan_files(path: Path, fail_on: str, as_json: bool, jobs: int) -> int:
    from gapsync.model import Severity
    from gapsync.scanner.base import scan_path

    report = scan_path(path, jobs=jobs)
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
