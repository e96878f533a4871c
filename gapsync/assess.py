"""Run every scanner on every artifact and let the policy decide: the one place both sides call.

Vulnerabilities (OSV, for Python packages and for Python packages found in image layers),
licenses, and the model scanner (on every model file, and on pickle-like files inside packages
and layers when the policy asks). Every artifact gets a Decision, even a clean one, so the report
shows what was looked at and not only what was found.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from gapsync.model import Action, Decision, Finding
from gapsync.policies.evaluate import evaluate
from gapsync.policies.schema import Policy
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
