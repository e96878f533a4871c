"""``gapsync scan``: run the scanners and the policy standalone, on files, a spec or a bundle."""

from __future__ import annotations

from pathlib import Path

import click

from gapsync import fsutil
from gapsync.cli.exit_codes import ExitCode
from gapsync.cli.options import cache_option, json_option, policy_option, report_option
from gapsync.cli.output import emit_json, table

SEVERITIES = ["critical", "high", "medium", "low", "info"]


@click.command()
@click.argument("path", required=False, type=click.Path(exists=True, path_type=Path))
@click.option("--spec", "spec_path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Scan everything this spec would carry (resolve and fetch, no bundle).")
@click.option("--lock", "lock_path", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="With --spec.")
@click.option("-r", "--requirement", "requirements", multiple=True,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Check the name==version pins of this requirements file offline (as pip-audit -r); repeat for several.")
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
def scan(path: Path | None, spec_path: Path | None, lock_path: Path | None, requirements: tuple[Path, ...],
         fail_on: str, policy: str | None, advisories: Path | None, report: Path | None, cache: Path | None, jobs: int,
         as_json: bool) -> int:
    """Scan PATH (model files, a wheel or sdist, a directory), a BUNDLE (a .gapsync file),
    --spec gapsync.yaml, or -r requirements.txt.

    Nothing is imported, unpickled, built or executed. Model files get the model scanner (exit 4
    at --fail-on or worse). Wheels and sdists (alone or in a directory), requirement pins, a
    bundle or a spec get every scanner and the policy, as bundle create does (exit 4 when the
    policy blocks something).
    """
    from gapsync.errors import InputError
    from gapsync.scanner.artifacts.distributions import find_distributions, is_distribution, read_distribution

    if sum(x is not None and x != () for x in (path, spec_path, requirements)) != 1:
        raise InputError("scan: give one of PATH (files, a directory, a wheel or sdist, a bundle), --spec gapsync.yaml "
                         "or -r requirements.txt")
    if requirements:
        return _scan_dists(None, list(requirements), [], fail_on, policy, advisories, report, as_json)
    if spec_path is not None or (path is not None and path.is_file() and path.name.endswith(".gapsync")):
        return _scan_artifacts(path, spec_path, lock_path, policy, advisories, report, cache, jobs, as_json)
    assert path is not None
    if path.is_file() and not path.is_symlink() and is_distribution(path):
        dist = read_distribution(path)
        if dist is not None:  # else an archive named like an sdist that is not one: the model scanner's
            return _scan_dists([dist], [], [], fail_on, policy, advisories, report, as_json)
    if path.is_dir() and not path.is_symlink():
        candidates, others, links = find_distributions(path)
        dists = []
        for p in candidates:
            d = read_distribution(p)
            if d is None:
                others.append(p)
            else:
                dists.append(d)
        if dists:
            return _scan_dists(dists, [], sorted(others), fail_on, policy, advisories, report, as_json, links)
    return _scan_files(path, fail_on, as_json, jobs)


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
        from gapsync.reports.html import render_html

        fsutil.write_atomic(report, render_html({**info, "findings": doc["findings"], "decisions": doc["decisions"],
                                                 "advisories": outcome.advisories, "policy": outcome.policy,
                                                 "artifacts": info.get("artifacts", [])}).encode())
    if as_json:
        emit_json(doc)
    else:
        from gapsync.reports.html import group_reasons

        groups = group_reasons(doc["decisions"])
        grouped = {(g["rule"], g["action"]) for g in groups}

        def why(d: dict) -> str:
            own = [r for r in d["reasons"] if (r["rule"], r["action"]) not in grouped and r["action"] != "allow"]
            return own[0]["message"][:70] if own else ("(below)" if d["action"] != "allow" else "")

        rows = [[d["artifact"], d["action"], outcome.licenses.get(d["artifact"]) or "?",
                 str(len(outcome.findings.get(d["artifact"], []))), why(d)] for d in doc["decisions"]]
        click.echo(table(rows, ["artifact", "decision", "license", "findings", "why"]))
        for g in groups:  # one line per rule that fired on many artifacts (e.g. no advisory database)
            names = ", ".join(g["artifacts"][:5]) + (f" and {g['count'] - 5} more" if g["count"] > 5 else "")
            click.echo(f"{g['action']} x{g['count']} {g['rule']}: {g['messages'][0][:120]} ({names})")
        c = doc["counts"]
        click.echo(f"{what}: {c['allow']} allowed, {c['warn']} warned, {c['block']} blocked "
                   f"(policy {outcome.policy['name']}, advisories: {'yes' if outcome.advisories else 'none'})", err=True)
    return int(ExitCode.BLOCKED_BY_POLICY if doc["blocked"] else ExitCode.OK)


def _scan_dists(dists: list | None, requirements: list[Path], others: list[Path], fail_on: str,
                policy: str | None, advisories: Path | None, report: Path | None, as_json: bool,
                links: list[str] | None = None) -> int:
    """``gapsync scan`` of wheels, sdists or requirements files (assess.scan_packages); prints it."""
    from gapsync.assess import scan_packages

    r = scan_packages(dists, requirements, others, fail_on, policy, advisories, links)
    doc, what = r.doc, r.doc["scanned"]
    if report:
        from gapsync.reports.html import render_html

        fsutil.write_atomic(report, render_html({"name": what, "artifacts": [], **{k: doc[k] for k in (
            "findings", "decisions", "advisories", "policy")}}).encode())
    if as_json:
        emit_json(doc)
    else:
        _print_dists(doc, r.entries, r.file_findings)
    return int(ExitCode.BLOCKED_BY_POLICY if r.blocked else ExitCode.OK)


def _print_dists(doc: dict, entries: list[dict], file_findings: list) -> None:
    rows = []
    for e in entries:
        ids = e.get("advisories") or []
        shown = ", ".join(ids[:4]) + (f" (+{len(ids) - 4})" if len(ids) > 4 else "")
        why = e.get("not_pinned") or (e["not_checked"][0] if e.get("not_checked") else "") or e.get("note") or ""
        if e.get("not_pinned"):
            shown = "-"
        elif e.get("advisories") is None:
            shown = "NOT CHECKED"
        rows.append([e.get("line") or Path(e["file"]).name, f"{e['name'] or '?'} {e['version'] or ''}".strip(),
                     e.get("decision") or "?", e.get("license") or ("-" if e.get("line") else "?"),
                     shown or "none", why[:70]])
    click.echo(table(rows, ["what", "distribution", "decision", "license", "advisories", "note"]))
    for f in file_findings:
        where = f.file + (f"!{f.location}" if f.location else "")
        click.echo(f"{where}: {f.severity.value} {f.rule}: {f.message}")
    for p in doc["other_files"]["not_read"]:
        click.echo(f"{p}: not read (a symbolic link, not followed, or not a regular file)")
    c = doc["counts"]
    pinned = sum(1 for e in entries if not e.get("not_pinned"))
    unpinned = len(entries) - pinned
    adv = doc["advisories"]
    click.echo(f"{doc['scanned']}: {pinned} distribution(s) "
               + ("checked, " if adv else "NOT checked for vulnerabilities (no advisory database), ")
               + (f"{unpinned} not pinned (not checked), " if unpinned else "")
               + f"{sum(len(e.get('advisories') or []) for e in entries)} advisories; "
               f"{c['allow']} allowed, {c['warn']} warned, {c['block']} blocked "
               f"(policy {doc['policy']['name']}, advisories: "
               + (f"{adv.get('advisories')} modified {adv.get('modified')}" if adv else "none") + ")", err=True)


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
            where = (f.file or str(path)) + (f"!{f.location}" if f.location else "")  # file: None means the path scanned
            at = f" @{f.offset}" if f.offset is not None else ""
            click.echo(f"{where}{at}: {f.severity.value} {f.rule}: {f.message}")
        worst = report.worst()
        click.echo(f"{report.files} file(s) scanned, {len(report.findings)} finding(s)"
                   + (f", worst {worst.value}" if worst else "")
                   + (f"; {len(blocking)} at {fail_on} or worse" if blocking else ""), err=True)
    return int(ExitCode.BLOCKED_BY_POLICY if blocking else ExitCode.OK)
