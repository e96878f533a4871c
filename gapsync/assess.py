"""Run every scanner on every artifact and let the policy decide: the one place both sides call.

Vulnerabilities (OSV, for Python packages and for Python packages found in image layers),
licenses, and the model scanner (on every model file, and on pickle-like files inside packages
and layers when the policy asks). Every artifact gets a Decision, even a clean one, so the report
shows what was looked at and not only what was found. ``gapsync scan`` of wheels, sdists and
requirements files comes through here too (:func:`scan_distributions`, :func:`scan_requirements`):
:mod:`gapsync.scanner.artifacts.distributions` only reads the files, it decides nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from gapsync.model import Action, Decision, Finding, artifact_key
from gapsync.policies.evaluate import evaluate
from gapsync.policies.schema import Policy
from gapsync.scanner.artifacts.distributions import Distribution, read_distribution, read_requirements
from gapsync.scanner.subject import ScanSubject


@dataclass
class ScanOutcome:
    findings: dict[str, list[Finding]] = field(default_factory=dict)
    licenses: dict[str, str | None] = field(default_factory=dict)
    decisions: dict[str, Decision] = field(default_factory=dict)
    advisories: dict[str, Any] | None = None
    policy: dict[str, Any] | None = None

    def blocked(self) -> list[str]:
        return sorted(k for k, d in self.decisions.items() if d.action is Action.BLOCK)

    def finding_dicts(self) -> list[dict[str, Any]]:
        return [{"artifact": key, **f.to_dict()} for key, fs in sorted(self.findings.items()) for f in fs]

    def decision_dicts(self) -> list[dict[str, Any]]:
        return [d.to_dict() for _, d in sorted(self.decisions.items())]

    def blocked_summary(self, shown: int = 5) -> str:
        """The blocked artifacts for a one-line error, grouped by the reason that blocks them
        (a missing advisory database blocks every package for one reason: said once)."""
        by_reason: dict[str, list[str]] = {}
        for key in self.blocked():
            reasons = self.decisions[key].reasons
            why = next((r["message"] for r in reasons if r["action"] == Action.BLOCK.value), reasons[0]["message"])
            by_reason.setdefault(why, []).append(key)
        parts = []
        for why, keys in list(by_reason.items())[:shown]:
            more = f" and {len(keys) - 3} more" if len(keys) > 3 else ""
            parts.append(f"{', '.join(keys[:3])}{more} ({why})")
        if len(by_reason) > shown:
            parts.append(f"{len(by_reason) - shown} more reasons")
        return "; ".join(parts)

    def counts(self) -> dict[str, int]:
        out = {a.value: 0 for a in Action}
        for d in self.decisions.values():
            out[d.action.value] += 1
        return out


def advisory_file(store: Path | None) -> Path | None:
    """The stored OSV database in ``store`` (or the default store), or None when none was imported."""
    from gapsync.advisories import default_store

    d = Path(store) if store is not None else default_store()
    if d.is_file():
        return d
    found = sorted(d.glob("*.osv.jsonl.gz")) if d.is_dir() else []
    return found[0] if found else None


def load_advisories(path: Path | None):
    """The advisory database at ``path`` (a stored OSV jsonl.gz), or None when there is none."""
    if path is None or not Path(path).is_file():
        return None
    from gapsync.advisories import AdvisoryDB

    return AdvisoryDB.load(Path(path))


def scan_subjects(subjects: list[ScanSubject], policy: Policy, advisories, now: datetime) -> ScanOutcome:
    from gapsync.scanner.artifacts import licenses, vulns
    from gapsync.scanner.models import ModelScanner

    outcome = ScanOutcome(advisories=advisories.info() if advisories is not None else None, policy=policy.summary())
    stale = _advisories_notice(outcome, subjects, policy, now)
    from gapsync.scanner.budget import BudgetLimits

    model_scanner = ModelScanner(BudgetLimits(**dict(policy.model_scan_budget)))
    for s in subjects:
        found: list[Finding] = []
        if advisories is not None and s.kind in ("python", "oci"):
            found += vulns.scan_subject(advisories, s)
        if s.kind == "conda":  # each package read once: metadata, unsafe paths, pickles when asked, license
            from gapsync.scanner.artifacts.conda_pkg import scan_subject as scan_conda

            conda_found, s.meta["license"] = scan_conda(s, policy.scan_pickles_in_packages)
            found += conda_found
        spdx, license_findings = licenses.scan_subject(s)
        found += license_findings
        if s.kind in ("model", "dataset") or (policy.scan_pickles_in_packages and s.kind != "conda"):
            budget = model_scanner.limits.for_size(s.size)  # one budget for all the artifact's files
            for f in s.files:
                found += list(model_scanner.scan_file(f.path, f.name, budget))
        outcome.findings[s.key] = found
        outcome.licenses[s.key] = spdx
        outcome.decisions[s.key] = evaluate(policy, s, found, license_spdx=spdx,
                                            vulns_checked=advisories is not None, now=now, stale=stale)
    return outcome


def _advisories_notice(outcome: ScanOutcome, subjects: list[ScanSubject], policy: Policy, now: datetime) -> str | None:
    """Never silent about the database: record how current it is in ``outcome.advisories`` and,
    when packages were not checked or were checked against a database older than the policy's
    ``advisories.max_age``, print ONE line (every command that scans comes through here).
    Returns why the database is stale, for the decisions (None when it is not)."""
    from gapsync.advisories import freshness, notice, notice_text

    fresh = freshness(outcome.advisories, policy.advisories_max_age, now)
    if outcome.advisories is not None:
        outcome.advisories = {**outcome.advisories, "age_days": fresh["age_days"],
                              "max_age_days": fresh["max_age_days"], "stale": fresh["state"] == "stale"}
    if any(s.kind in ("python", "oci") for s in subjects):
        action = policy.vuln_no_database if fresh["state"] == "missing" else policy.advisories_stale
        text = notice_text(fresh, action.value, policy.name)
        if text:
            notice(text)
    return fresh["why"] if fresh["state"] == "stale" else None


# --- gapsync scan of distributions and requirements files (scanner/artifacts/distributions.py reads them) ---


@dataclass
class DistScan:
    """What ``scan`` reports for distributions or a requirements file."""

    outcome: ScanOutcome
    entries: list[dict[str, Any]] = field(default_factory=list)  # one per distribution / requirement line


def scan_distributions(paths: list[Path | Distribution], policy: Policy, advisories, now: datetime,
                       scratch: Path) -> DistScan:
    """Scan wheels and sdists as ``bundle create`` scans them, the model scanner included (as
    with ``models.scan_pickles_in_packages``: the user asked for these files to be scanned).
    ``scratch``: a private directory where each core metadata is written for the license scanner."""
    import dataclasses

    from gapsync import fsutil
    from gapsync.hashing import sha256_file
    from gapsync.scanner.subject import SubjectFile

    dists = [d for d in (p if isinstance(p, Distribution) else read_distribution(p) for p in paths) if d is not None]
    subjects: dict[str, ScanSubject] = {}
    origin: dict[str, list[tuple[Distribution, str]]] = {}
    for i, d in enumerate(dists):
        meta_path = None
        if d.metadata is not None:
            meta_path = scratch / f"{i}.metadata"
            fsutil.write_new(meta_path, d.metadata)
        sha, size = sha256_file(d.path)
        s = subjects.setdefault(artifact_key("python", d.name, d.version),
                                ScanSubject("python", d.name, d.version, [], {"metadata": None}))
        s.files.append(SubjectFile(d.path.name, sha, size, d.path))
        if s.meta["metadata"] is None:
            s.meta["metadata"] = meta_path
        origin.setdefault(s.key, []).append((d, d.source))
        if d.disagrees:  # the release the file name claims is checked too (no files: vulnerabilities only)
            fn_name, fn_version = d.file_name  # type: ignore[misc]
            k = artifact_key("python", fn_name, fn_version)
            subjects.setdefault(k, ScanSubject("python", fn_name, fn_version, [], {"metadata": None}))
            origin.setdefault(k, []).append((d, "file name"))
    outcome = scan_subjects(list(subjects.values()), dataclasses.replace(policy, scan_pickles_in_packages=True),
                            advisories, now)
    entries = []
    for key, items in origin.items():
        for d, source in items:
            entries.append({"file": str(d.path), "name": subjects[key].name, "version": subjects[key].version,
                            "source": source, "note": d.note, **_verdict(outcome, key)})
    return DistScan(outcome, entries)


def _verdict(outcome: ScanOutcome, key: str) -> dict[str, Any]:
    found = outcome.findings.get(key, [])
    decision = outcome.decisions.get(key)
    checked = outcome.advisories is not None  # without a database: null, never an empty (clean-looking) list
    return {"artifact": key,
            "advisories": [f.rule for f in found if f.scanner == "vulns" and f.rule != "vulns.not-checked"]
            if checked else None,
            "aliases": {f.rule: f.evidence.get("aliases", []) for f in found
                        if f.scanner == "vulns" and f.rule != "vulns.not-checked"},
            "not_checked": [f.message for f in found if f.rule == "vulns.not-checked"],
            "license": outcome.licenses.get(key),
            "findings": len(found),
            "decision": decision.action.value if decision else None}


def scan_requirements(path: Path, policy: Policy, advisories, now: datetime) -> DistScan:
    """Each pin checked like a package in a bundle (same matching, same policy); each line that
    is not a pin gets the policy's ``vulnerabilities.not_checked`` decision."""
    from gapsync.model import Severity

    lines = read_requirements(path)
    subjects: dict[str, ScanSubject] = {}
    for r in lines:
        if r.version is not None and r.name:
            subjects.setdefault(artifact_key("python", r.name, r.version), ScanSubject("python", r.name, r.version, [],
                                                                            {"metadata": None}))
    outcome = scan_subjects(list(subjects.values()), policy, advisories, now)
    entries = []
    for r in lines:
        entry: dict[str, Any] = {"line": r.where, "requirement": r.text, "name": r.name, "version": r.version,
                                 "marker": r.marker}
        if r.version is not None and r.name:
            entry.update(_verdict(outcome, artifact_key("python", r.name, r.version)))
        else:
            key = artifact_key("python", r.name or r.text, r.where)
            subject = ScanSubject("python", r.name or r.text, r.where, [], {"metadata": None})
            finding = Finding("vulns", "vulns.not-checked", Severity.UNKNOWN, f"{r.where}: {r.text}: {r.why}",
                              file=r.where, evidence={"package": r.name, "version": None, "reason": r.why})
            outcome.findings[key] = [finding]
            outcome.decisions[key] = evaluate(policy, subject, [finding], license_spdx=None,
                                              vulns_checked=advisories is not None, now=now)
            entry.update({"not_pinned": r.why, **_verdict(outcome, key)})
        entries.append(entry)
    return DistScan(outcome, entries)


@dataclass
class PackageScan:
    """``gapsync scan`` of distributions or requirements files (and the other files beside them):
    the document ``--json`` prints, the merged outcome, and whether it fails the scan."""

    doc: dict[str, Any]
    outcome: ScanOutcome
    entries: list[dict[str, Any]]
    file_findings: list[Finding]
    blocked: bool  # the policy blocks a package, or another file has a finding at ``fail_on`` or worse


def scan_packages(dists: list[Path | Distribution] | None, requirements: list[Path], others: list[Path],
                  fail_on: str, policy: str | None, advisories: Path | None,
                  links: list[str] | None = None) -> PackageScan:
    """Wheels and sdists (``dists``) or requirements files, through the scan ``bundle create``
    runs, under ``policy`` and the advisory store ``advisories``; the other files of a directory
    (``others``) through the model scanner. ``links``: what the directory walk did not read
    (symbolic links, FIFOs, devices), reported as such."""
    from datetime import UTC

    from gapsync import fsutil
    from gapsync.model import Severity
    from gapsync.policies.schema import load_policy
    from gapsync.scanner.base import scan_path

    pol = load_policy(policy)
    db = load_advisories(advisory_file(advisories))
    now = datetime.now(UTC)
    results = []
    if dists:
        with fsutil.temp_dir("gapsync-scan-") as scratch:
            results.append(scan_distributions(dists, pol, db, now, scratch))
    results += [scan_requirements(r, pol, db, now) for r in requirements]
    outcome = results[0].outcome
    for extra in results[1:]:
        outcome.findings.update(extra.outcome.findings)
        outcome.licenses.update(extra.outcome.licenses)
        outcome.decisions.update(extra.outcome.decisions)
    entries = [e for r in results for e in r.entries]
    file_findings = [f for p in others for f in scan_path(p).findings]
    file_blocking = [f for f in file_findings if f.severity.rank >= Severity(fail_on).rank]
    what = ", ".join(str(getattr(x, "path", x)) for x in (dists or requirements))
    doc = {"scanned": what, "distributions": entries, "decisions": outcome.decision_dicts(),
           "findings": outcome.finding_dicts(), "licenses": outcome.licenses, "advisories": outcome.advisories,
           "policy": outcome.policy, "counts": outcome.counts(), "blocked": outcome.blocked(),
           "other_files": {"scanned": len(others), "findings": [f.to_dict() for f in file_findings],
                           "fail_on": fail_on, "blocked": bool(file_blocking),
                           "not_read": links or []}}  # symbolic links (not followed), FIFOs, devices
    return PackageScan(doc, outcome, entries, file_findings, bool(doc["blocked"] or file_blocking))
